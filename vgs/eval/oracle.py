"""The best recall any model could reach on a corpus whose captions fit several images.

In `digitscenes` a caption names only some of a scene's digits, so it can describe other test
scenes too (vgs/corpora/digitscenes.py, `fits_matrix`). The oracle ranks every fitting candidate
first, in random order (vgs.eval.retrieval.oracle_recall). Real corpora (Places, Flickr8k) have no
such labels (no scenes.json in their folder); there the oracle is not defined and tables say "n/a".
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from vgs.errors import DataError
from vgs.eval.retrieval import DEFAULT_KS, RecallResult, oracle_recall


def scene_labels_root(corpus_root: str | Path | None) -> str | Path | None:
    """`corpus_root` when it holds digitscenes' scene labels (scenes.json), else None: no oracle."""
    if corpus_root is None or not (Path(corpus_root) / "scenes.json").is_file():
        return None
    return corpus_root


@functools.lru_cache(maxsize=2)
def _scenes_by_image(scenes_json: str, mtime_ns: int, size: int) -> dict[str, dict]:
    # digitscenes' scenes.json is 12 MB of JSON, about a second to parse, and one evaluation asks
    # for it once per view pair (6 times): read it once per version of the file. The scenes are only read, never changed.
    from vgs.corpora.digitscenes import load_scenes
    return {s["image"]: s for s in load_scenes(Path(scenes_json).parent)}


def _scenes_in_order(corpus_root: str | Path, image_ids, corpus: str) -> list[dict]:
    path = (Path(corpus_root) / "scenes.json").resolve()
    stat = path.stat() if path.exists() else None
    by_image = _scenes_by_image(str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    prefix = f"{corpus}-"
    ordered = []
    for image_id in image_ids:
        key = str(image_id)[len(prefix):] if str(image_id).startswith(prefix) else str(image_id)
        if key not in by_image:
            raise DataError(f"image {image_id!r} is not a scene of {corpus_root}/scenes.json",
                            hint="the oracle needs the digitscenes build the stores were made from")
        ordered.append(by_image[key])
    return ordered


def image_caption_oracle(corpus_root: str | Path | None, corpus: str, image_ids, caption_texts, language: str,
                         ks=DEFAULT_KS) -> RecallResult | None:
    """Oracle recall of image <-> caption retrieval over aligned lists (caption i describes image i);
    None when the corpus has no scene labels (no scenes.json under `corpus_root`)."""
    if scene_labels_root(corpus_root) is None:
        return None
    from vgs.corpora.digitscenes import fits_matrix
    scenes = _scenes_in_order(corpus_root, image_ids, corpus)
    fits = fits_matrix(scenes, list(caption_texts), language)   # (captions, scenes)
    # Rows of the transpose are image queries: the image view comes first, as in recall tables.
    return oracle_recall(np.ascontiguousarray(fits.T), ks=ks, names=("image", language))


def caption_caption_oracle(corpus_root: str | Path | None, corpus: str, image_ids, texts_a, language_a: str,
                           texts_b, language_b: str, ks=DEFAULT_KS) -> RecallResult | None:
    """Oracle recall between two caption views (cross-lingual): candidate j ties with the truth
    when some test scene fits both captions (vgs.corpora.digitscenes.caption_pair_fits)."""
    if scene_labels_root(corpus_root) is None:
        return None
    from vgs.corpora.digitscenes import caption_pair_fits
    scenes = _scenes_in_order(corpus_root, image_ids, corpus)
    fits = caption_pair_fits(scenes, list(texts_a), language_a, list(texts_b), language_b)
    return oracle_recall(fits, ks=ks, names=(language_a, language_b))
