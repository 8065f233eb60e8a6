"""SpokenCOCO (Hsu et al. 2021): about 605,000 spoken readings of the MSCOCO 2014 text captions.

The release (SpokenCOCO.tar.gz) holds `SpokenCOCO_train.json` (the COCO train2014 images) and
`SpokenCOCO_val.json` (the val2014 images), each
  {"data": [{"image": "val2014/COCO_val2014_000000325114.jpg",
             "captions": [{"text": "A URINAL IN A PUBLIC RESTROOM ...", "speaker": "m071506418gb9vo0w5xq3",
                           "uttid": "m071506418gb9vo0w5xq3-..._325114_629297",
                           "wav": "wavs/val/0/m071506418gb9vo0w5xq3-..._325114_629297.wav"}, ...]}, ...]}
with the WAVs under SpokenCOCO/wavs/ and the images under a COCO root (train2014/, val2014/).

Splits. Retrieval work on SpokenCOCO (and the text-caption work it compares with) uses the
Karpathy split of COCO 2014: 5,000 val and 5,000 test images, both drawn from val2014, the rest of
val2014 ("restval") added to train2014 for training. It comes as dataset_coco.json in Karpathy's
caption_datasets.zip, {"images": [{"filepath": "val2014", "filename": "COCO_val2014_...jpg",
"split": "train" | "restval" | "val" | "test", ...}]}. With `split_scheme="karpathy"` (default)
train and restval map to train (`restval="skip"` leaves restval out, as some works train on the
82,783 train2014 images only), val to val, test to test. `split_scheme="coco2014"` keeps the
release's own two files instead (train2014 -> train, val2014 -> val) and has no test split.

Ids: image `spokencoco-<image name without .jpg>`, caption `spokencoco-<uttid>`.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from vgs.corpora.captions import (IMAGE_VIEW, Caption, CaptionCorpus, Joiner, Rejections, build_caption_corpus,
                                  common_root, get_key, load_json)
from vgs.errors import DataError, ParamError

RELEASE_FILES = {"train": "SpokenCOCO_train.json", "val": "SpokenCOCO_val.json"}
KARPATHY = {"train": "train", "restval": "train", "val": "val", "test": "test"}
KARPATHY_NAMES = ("dataset_coco.json", "karpathy_split.json")
SCHEMES = ("karpathy", "coco2014")
LAYOUT = """expected layout (SpokenCOCO, Hsu et al. 2021, with MSCOCO 2014 images):
  <root>/SpokenCOCO_train.json, <root>/SpokenCOCO_val.json
      {"data": [{"image": "val2014/COCO_val2014_000000325114.jpg",
                 "captions": [{"text": ..., "speaker": ..., "uttid": ..., "wav": "wavs/val/0/<uttid>.wav"}]}]}
  <root>/wavs/{train,val}/<n>/<uttid>.wav
  <coco_root>/train2014/*.jpg, <coco_root>/val2014/*.jpg   (coco_root defaults to <root>/..)
  <root or coco_root>/dataset_coco.json   Karpathy's split (caption_datasets.zip), for split_scheme karpathy"""


def _karpathy(path: Path, rejections: Rejections, restval: str) -> dict[str, str | None]:
    """Image file name -> our split (None: restval left out), from Karpathy's dataset_coco.json."""
    data = load_json(path, rejections, IMAGE_VIEW, LAYOUT)
    images = rejections.guard(get_key, data, "images", str(path), LAYOUT, list,
                              view=IMAGE_VIEW, id=None, path=path, kind="json") if data is not None else None
    split_of = {}

    def read(i, entry):
        where = f"{path}: image {i}"
        name, split = get_key(entry, "filename", where, LAYOUT), get_key(entry, "split", where, LAYOUT)
        if split not in KARPATHY:
            raise DataError(f"{where}: split must be one of {sorted(KARPATHY)}, got {split!r}", hint=LAYOUT)
        split_of[name] = None if split == "restval" and restval == "skip" else KARPATHY[split]

    for i, entry in enumerate(images or []):
        rejections.guard(read, i, entry, view=IMAGE_VIEW, id=f"{path}#{i}", path=path, kind="entry")
    return split_of


def prepare_spokencoco(root: str | Path, coco_root: str | Path | None = None, *, split_scheme: str = "karpathy",
                       karpathy_split: str | Path | None = None, restval: str = "train", on_error: str = "raise",
                       max_frames: int | None = None, frame_shift_ms: float = 10.0) -> CaptionCorpus:
    root = Path(root)
    coco_root = Path(coco_root) if coco_root is not None else root.parent
    if split_scheme not in SCHEMES:
        raise ParamError(f"split_scheme must be one of {SCHEMES}, got {split_scheme!r}")
    if restval not in ("train", "skip"):
        raise ParamError(f"restval must be 'train' or 'skip', got {restval!r}")
    if not (root / "wavs").is_dir():
        raise DataError(f"SpokenCOCO wavs folder {root / 'wavs'} not found", hint=LAYOUT)
    if not any((coco_root / d).is_dir() for d in ("train2014", "val2014")):
        raise DataError(f"COCO root {coco_root} has neither train2014/ nor val2014/", hint=LAYOUT)
    rejections = Rejections(on_error)
    split_of = None
    if split_scheme == "karpathy":
        if karpathy_split is None:
            karpathy_split = next((d / n for d in (root, coco_root) for n in KARPATHY_NAMES if (d / n).is_file()), None)
        if karpathy_split is None:
            raise DataError(f"Karpathy split file not found ({' or '.join(KARPATHY_NAMES)} in {root} or {coco_root})",
                            hint="get dataset_coco.json from Karpathy's caption_datasets.zip and set "
                                 "karpathy_split: /path/to/dataset_coco.json under caption_corpora.<name> in "
                                 "params.yaml, or split_scheme: coco2014 there (no test split)")
        split_of = _karpathy(Path(karpathy_split), rejections, restval)
    joiner = Joiner(rejections)

    def add(release_split: str, json_path: Path, index: int, entry):
        where = f"{json_path}: entry {index}"
        image = get_key(entry, "image", where, LAYOUT)
        captions = get_key(entry, "captions", where, LAYOUT, list)
        name = PurePosixPath(image).name
        image_id = f"spokencoco-{PurePosixPath(image).stem}"
        caps = []
        for j, c in enumerate(captions):
            at = f"{where}, caption {j}"
            wav = get_key(c, "wav", at, LAYOUT)
            uttid = get_key(c, "uttid", at, LAYOUT, required=False) or PurePosixPath(wav).stem
            caps.append(Caption(f"spokencoco-{uttid}", root / wav, "en",
                                get_key(c, "speaker", at, LAYOUT, required=False),
                                get_key(c, "text", at, LAYOUT, required=False)))
        split = release_split if split_of is None else split_of.get(name)
        if split is None:
            why = ("is in Karpathy's restval (restval='skip')" if name in split_of
                   else f"is not in {karpathy_split}")
            rejections.skip(IMAGE_VIEW, image_id, coco_root / image, f"image {name} {why}", "no_split")
            for cap in caps:
                rejections.skip("en", cap.id, cap.wav, f"its image {name} {why}", "no_split")
            return
        joiner.add(image_id, coco_root / image, split, f"{json_path.name} entry {index}")
        for cap in caps:
            joiner.add(image_id, coco_root / image, split, f"{json_path.name} entry {index}", cap)

    for release_split, name in RELEASE_FILES.items():
        json_path = root / name
        data = load_json(json_path, rejections, "en", LAYOUT)
        items = rejections.guard(get_key, data, "data", str(json_path), LAYOUT, list,
                                 view="en", id=None, path=json_path, kind="json") if data is not None else None
        for i, entry in enumerate(items or []):
            rejections.guard(add, release_split, json_path, i, entry, view="en", id=f"{json_path}#{i}",
                             path=json_path, kind="entry")
    notes = ([f"splits: Karpathy split from {karpathy_split} (train{' + restval' * (restval == 'train')} -> train)"]
             if split_of is not None
             else ["splits: the release's own files (train2014 -> train, val2014 -> val); no test split"])
    return build_caption_corpus("spokencoco", common_root([root, coco_root]), joiner.points.values(), rejections,
                                languages=["en"], layout=LAYOUT, max_frames=max_frames,
                                frame_shift_ms=frame_shift_ms, notes=notes)
