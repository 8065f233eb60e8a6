"""digitscenes: a trilingual spoken-caption corpus of MNIST digit scenes, built offline.

A scene is a PNG of `digits_per_scene` MNIST digits on a grid (default 2x2 on a 64x64 canvas,
32x32 cells, each digit jittered by up to `jitter` pixels; overlapping strokes combine by max).
Each language view gives every scene one spoken caption that names `digits_per_caption` of its
digits (default 3 of 4, positions drawn per caption) in the language's reading order:

    en  rows, left to right, top to bottom          real speech: FSDD, one speaker per caption
    hi  columns, top to bottom, left to right       eSpeak NG, voice variant/pitch/rate drawn per caption
    ja  columns right to left, each top to bottom   eSpeak NG, likewise

so the captions of one image in different languages are different descriptions, not
translations. Scenes of train/val/test use only the MNIST images and FSDD recordings of that
split (the splits of the mnist and fsdd manifests), so nothing crosses splits.

Output (the Places audio-caption layout, so one adapter reads ours and a real Places copy):

    <out>/images/<split>/<scene_id>.png            8-bit grayscale
    <out>/wavs/<lang>/<split>/<uttid>.wav          16-bit PCM mono, 8 kHz, peak-normalised
    <out>/<lang>_<split>.json                      {"image_base_path": "images",
                                                    "audio_base_path": "wavs/<lang>",
                                                    "data": [{"uttid", "speaker", "wav", "image",
                                                              "text", "synthetic", "digits"}]}
    <out>/scenes.json                              every scene: digits, grid cells, pixel places,
                                                   MNIST ids, and how each caption was made
    <out>/README.txt                               which views are real, which synthetic; credits

Base paths are relative to the JSON file's folder, `wav` to audio_base_path, `image` to
image_base_path. The directory is built in a temporary sibling and renamed at the end.

Determinism: every random choice comes from a generator seeded by (seed, split, scene index,
purpose), planned in one process; rendering is a pure function of the plan, so the files do not
depend on the number of workers, and the same seed gives byte-identical files. The sizes of
other splits do not change a split's scenes.

The "fits" relation (oracle retrieval): a caption fits a scene if the caption's digit sequence
is an order-preserving subsequence of the scene's digits read in the caption's language order.
Several scenes can fit one caption (3 of 4 digits named), which bounds any retrieval system:
see `fits_matrix` and `caption_pair_fits`.
"""
from __future__ import annotations

import io
import json
import math
import multiprocessing
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vgs.corpora.manifest import SPLITS, Manifest, read_manifest
from vgs.errors import AudioError, DataError, ManifestError, ParamError
from vgs.utils.atomic import atomic_path

DIGIT_SIZE = 28                       # MNIST images are 28x28
SECTION = "digitscenes"               # params.yaml section


@dataclass(frozen=True)
class Language:
    code: str
    reading: str          # rows | columns | columns-rtl
    source: str           # fsdd (real speech) | espeak (synthetic)
    espeak_voice: str     # eSpeak NG voice name (used for synthesis when source == espeak)
    description: str


LANGUAGES = {
    "en": Language("en", "rows", "fsdd", "en-us", "English, real speech (FSDD)"),
    "hi": Language("hi", "columns", "espeak", "hi", "Hindi, synthetic (eSpeak NG)"),
    "ja": Language("ja", "columns-rtl", "espeak", "ja", "Japanese, synthetic (eSpeak NG)"),
}
READING_TEXT = {
    "rows": "row by row (left to right, top to bottom)",
    "columns": "column by column (top to bottom, left to right)",
    "columns-rtl": "traditional vertical order (columns right to left, each top to bottom)",
}
_LANGUAGE_CODE = {"en": 0, "hi": 1, "ja": 2}   # fixed: adding a language never changes another's draws
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_SCENE, _MNIST, _CAPTION = 0, 1, 2             # purposes of the seeded generators

CREDITS = ("Free Spoken Digit Dataset (FSDD), Z. Jackson et al. (CC BY-SA 4.0)",
           "The MNIST database of handwritten digits, Y. LeCun, C. Cortes, C. J. C. Burges (CC BY-SA 3.0)")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitScenesConfig:
    """The `digitscenes` section of params.yaml. `validate()` names the key and the fix."""

    sizes: dict = field(default_factory=lambda: {"train": 8000, "val": 1000, "test": 1000})
    canvas: int = 64
    digits_per_scene: int = 4
    digits_per_caption: int = 3
    jitter: int = 3                        # pixels, each axis, uniform in [-jitter, jitter]
    languages: tuple = ("en", "hi", "ja")
    sample_rate: int = 8000                # FSDD's rate
    peak_dbfs: float = -1.0                # every caption's peak after normalisation
    gap_ms: tuple = (50, 250)              # en: silence between FSDD words, uniform
    voices: tuple = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
    rate: tuple = (130, 210)               # eSpeak words per minute, uniform integer
    pitch: tuple = (25, 75)                # eSpeak base pitch 0-100
    pitch_range: tuple = (25, 75)          # eSpeak pitch range 0-100
    word_gap: tuple = (0, 8)               # eSpeak extra pause between words, units of 10 ms
    num_workers: int = 1                   # processes that render scenes (1: in this process)

    # -- derived ----------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols): the squarest grid holding digits_per_scene cells (4 -> 2x2, 6 -> 2x3)."""
        cols = math.ceil(math.sqrt(self.digits_per_scene))
        return math.ceil(self.digits_per_scene / cols), cols

    @property
    def cell(self) -> tuple[int, int]:
        rows, cols = self.grid
        return self.canvas // rows, self.canvas // cols

    def validate(self) -> "DigitScenesConfig":
        def bad(key: str, msg: str, hint: str | None = None) -> ParamError:
            return ParamError(f"{SECTION}.{key} {msg} (params.yaml)", hint=hint)

        def integer(key, value, lo=None, hi=None):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(key, f"must be an integer, got {value!r}")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise bad(key, f"must be an integer {rng}, got {value!r}")

        def interval(key, value, lo, hi):
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
                raise bad(key, f"must be a pair [low, high] of numbers, got {value!r}")
            if not lo <= value[0] <= value[1] <= hi:
                raise bad(key, f"must satisfy {lo} <= low <= high <= {hi}, got {list(value)!r}")

        if not isinstance(self.sizes, dict):
            raise bad("sizes", f"must be a mapping of split to number of scenes, got {self.sizes!r}")
        unknown = sorted(set(self.sizes) - set(SPLITS))
        if unknown:
            raise bad("sizes", f"has unknown split(s) {unknown}", hint="use train, val and test")
        for split in SPLITS:
            if split not in self.sizes:
                raise bad(f"sizes.{split}", "is missing", hint="give every split a positive number of scenes")
            integer(f"sizes.{split}", self.sizes[split], 1)
        integer("digits_per_scene", self.digits_per_scene, 1)
        integer("digits_per_caption", self.digits_per_caption, 1)
        if self.digits_per_caption > self.digits_per_scene:
            raise bad("digits_per_caption", f"= {self.digits_per_caption} exceeds digits_per_scene = "
                      f"{self.digits_per_scene}", hint="a caption can name at most the digits its scene shows")
        integer("canvas", self.canvas, 1)
        integer("jitter", self.jitter, 0)
        rows, cols = self.grid
        need = DIGIT_SIZE * max(rows, cols)
        if self.canvas < need:
            raise bad("canvas", f"= {self.canvas} is too small for a {rows}x{cols} grid of "
                      f"{DIGIT_SIZE}x{DIGIT_SIZE} digits", hint=f"use canvas >= {need}")
        if not isinstance(self.languages, (list, tuple)) or not self.languages:
            raise bad("languages", f"must be a non-empty list, got {self.languages!r}")
        for lang in self.languages:
            if lang not in LANGUAGES:
                raise bad("languages", f"has unknown language {lang!r}", hint="known: " + ", ".join(LANGUAGES))
        if len(set(self.languages)) != len(self.languages):
            raise bad("languages", f"lists a language twice: {list(self.languages)!r}")
        integer("sample_rate", self.sample_rate, 1000)
        if isinstance(self.peak_dbfs, bool) or not isinstance(self.peak_dbfs, (int, float)) \
                or not -60 <= self.peak_dbfs <= 0:
            raise bad("peak_dbfs", f"must be a number in [-60, 0], got {self.peak_dbfs!r}")
        interval("gap_ms", self.gap_ms, 0, 5000)
        from vgs.corpora.espeak import RATE_LIMITS, VOICE_VARIANTS
        if not isinstance(self.voices, (list, tuple)) or not self.voices:
            raise bad("voices", f"must be a non-empty list of eSpeak voice variants, got {self.voices!r}")
        for v in self.voices:
            if v not in VOICE_VARIANTS:
                raise bad("voices", f"has unknown eSpeak NG voice variant {v!r}",
                          hint="use variants among " + ", ".join(VOICE_VARIANTS))
        for key, lo, hi in (("rate", *RATE_LIMITS), ("pitch", 0, 100), ("pitch_range", 0, 100),
                            ("word_gap", 0, 100)):
            value = getattr(self, key)
            interval(key, value, lo, hi)
            if any(not isinstance(v, int) for v in value):
                raise bad(key, f"must be a pair of integers, got {list(value)!r}")
        integer("num_workers", self.num_workers, 1)
        return self

    @classmethod
    def from_params(cls, params, profile: str | None = None) -> "DigitScenesConfig":
        """From a vgs.params.Params holding the `digitscenes` section (profile merged in)."""
        p = params.profiled(SECTION, profile)
        d = cls()
        sizes = p.raw("sizes", d.sizes)
        pairs = {k: tuple(p.list(k, list(getattr(d, k)))) for k in ("gap_ms", "rate", "pitch", "pitch_range",
                                                                   "word_gap")}
        known = {f for f in cls.__dataclass_fields__} | {"profiles"}
        unknown = sorted(set(p.keys()) - known)
        if unknown:
            raise ParamError(f"{SECTION} has unknown key(s) {unknown} ({p.source})",
                             hint="known keys: " + ", ".join(sorted(cls.__dataclass_fields__)))
        return cls(sizes=dict(sizes) if isinstance(sizes, dict) else sizes,
                   canvas=p.int("canvas", d.canvas), digits_per_scene=p.int("digits_per_scene", d.digits_per_scene),
                   digits_per_caption=p.int("digits_per_caption", d.digits_per_caption),
                   jitter=p.int("jitter", d.jitter), languages=tuple(p.list("languages", list(d.languages))),
                   sample_rate=p.int("sample_rate", d.sample_rate), peak_dbfs=p.float("peak_dbfs", d.peak_dbfs),
                   voices=tuple(p.list("voices", list(d.voices))), num_workers=p.int("num_workers", d.num_workers),
                   **pairs).validate()


# ----------------------------------------------------------------------------------------------
# Reading orders and the "fits" relation
# ----------------------------------------------------------------------------------------------
def reading_order(rows: int, cols: int, language: str) -> list[tuple[int, int]]:
    """The grid cells (row, col) in the order `language` reads them."""
    if language not in LANGUAGES:
        raise ParamError(f"unknown language {language!r}", hint="known: " + ", ".join(LANGUAGES))
    reading = LANGUAGES[language].reading
    if reading == "rows":
        return [(r, c) for r in range(rows) for c in range(cols)]
    if reading == "columns":
        return [(r, c) for c in range(cols) for r in range(rows)]
    return [(r, c) for c in reversed(range(cols)) for r in range(rows)]


def read_scene(scene_digits_grid, language: str) -> list[int]:
    """The scene's digits in `language`'s reading order (empty cells, -1 or None, skipped)."""
    grid = _grid_array(scene_digits_grid)
    return [int(grid[r, c]) for r, c in reading_order(*grid.shape, language) if grid[r, c] >= 0]


def caption_fits(caption_digits: Sequence[int], scene_digits_grid, language: str) -> bool:
    """True if the caption's digits are an order-preserving subsequence of the scene's digits
    read in `language`'s order (so the caption could have been said about this scene)."""
    remaining = iter(read_scene(scene_digits_grid, language))
    return all(any(d == s for s in remaining) for d in (int(x) for x in caption_digits))


def fits_matrix(scenes, captions, language: str) -> np.ndarray:
    """(N_captions x N_scenes) bool: caption i fits scene j (see `caption_fits`).

    scenes: scene dicts (scenes.json entries, with "grid"), digit grids, or an array
    (N, rows, cols) with -1 for empty cells. captions: digit sequences, texts such as "7 3 0",
    or caption dicts with "digits" (the entries of <lang>_<split>.json). Vectorised: a greedy subsequence match runs
    over the rows*cols reading positions for all pairs at once (1,000 x 1,000 in milliseconds).
    """
    grids = scene_grids(scenes)
    n_scenes = len(grids)
    caps = [_caption_digits(c) for c in captions]
    n_caps = len(caps)
    if n_caps == 0 or n_scenes == 0:
        return np.zeros((n_caps, n_scenes), dtype=bool)
    rows, cols = grids.shape[1:]
    order = reading_order(rows, cols, language)
    seq = grids[:, [r for r, _ in order], [c for _, c in order]]          # (N_scenes, L)
    lengths = np.array([len(c) for c in caps], dtype=np.int64)
    padded = np.full((n_caps, int(lengths.max()) + 1), -2, dtype=np.int64)  # -2 matches nothing
    for i, c in enumerate(caps):
        padded[i, :len(c)] = c
    pointer = np.zeros((n_caps, n_scenes), dtype=np.int64)
    row_index = np.arange(n_caps)[:, None]
    for j in range(seq.shape[1]):
        wanted = padded[row_index, pointer]                                # next digit each pair needs
        pointer += (wanted == seq[None, :, j]) & (seq[None, :, j] >= 0)
    return pointer == lengths[:, None]


def _caption_digits(caption) -> list[int]:
    if isinstance(caption, dict):
        return [int(x) for x in caption["digits"]]
    if isinstance(caption, str):                       # a caption's text, e.g. "7 3 0"
        return [int(x) for x in caption.split()]
    return [int(x) for x in caption]


def caption_pair_fits(scenes, query_captions, query_language: str, candidate_captions,
                      candidate_language: str) -> np.ndarray:
    """(N_queries x N_candidates) bool for caption-to-caption (e.g. cross-lingual) retrieval.

    Candidate caption j is indistinguishable from the true partner of query i (the caption of
    query i's scene in the candidate language) if some scene of `scenes` fits both captions:
    nothing in the two captions tells the pair apart from a true pair of that scene. The true
    pair always fits (their shared scene fits both), so the oracle recall of caption-to-caption
    retrieval is computed from this matrix exactly as caption-to-scene recall from fits_matrix.
    """
    a = fits_matrix(scenes, query_captions, query_language).astype(np.float32)
    b = fits_matrix(scenes, candidate_captions, candidate_language).astype(np.float32)
    return (a @ b.T) > 0.5


def scene_grids(scenes) -> np.ndarray:
    """(N, rows, cols) int64 digit grids, -1 for empty cells."""
    if isinstance(scenes, np.ndarray):
        grids = scenes.astype(np.int64)
    else:
        items = list(scenes)
        if not items:
            return np.zeros((0, 1, 1), dtype=np.int64)
        grids = np.stack([_grid_array(s["grid"] if isinstance(s, dict) else s) for s in items])
    if grids.ndim != 3:
        raise ValueError(f"scene grids must have shape (N, rows, cols), got {grids.shape}")
    return grids


def _grid_array(grid) -> np.ndarray:
    arr = np.array([[-1 if v is None else int(v) for v in row] for row in grid], dtype=np.int64) \
        if not isinstance(grid, np.ndarray) else grid.astype(np.int64)
    if arr.ndim != 2:
        raise ValueError(f"a scene grid must be 2-D (rows x cols), got shape {arr.shape}")
    return arr


def load_scenes(root: str | Path, split: str | None = None) -> list[dict]:
    """The scenes of a built corpus (scenes.json), optionally of one split, in caption order."""
    path = Path(root) / "scenes.json"
    if not path.exists():
        raise DataError(f"{path} not found", hint="build the corpus first: dvc repro digitscenes")
    scenes = json.loads(path.read_text())["scenes"]
    return [s for s in scenes if split is None or s["split"] == split]


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def load_input_manifest(path: str | Path, corpus: str, modality: str) -> Manifest:
    """A prepared manifest, checked to be the expected corpus; errors name the prepare stage."""
    hint = f"run the prepare stage first: dvc repro prepare@{corpus}"
    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        raise ManifestError(f"{corpus} manifest: {exc.message}", hint=hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{corpus} manifest {path} cannot be read: {exc}", hint=hint) from None
    if manifest.corpus != corpus:
        raise ManifestError(f"{path} is the manifest of corpus {manifest.corpus!r}, expected {corpus!r}",
                            hint=f"pass data/manifests/{corpus}.jsonl")
    wrong = [r.id for r in manifest.records if r.modality != modality or r.label is None]
    if wrong:
        raise ManifestError(f"{path}: {len(wrong)} record(s) are not labelled {modality} items, e.g. {wrong[0]!r}",
                            hint=hint)
    return manifest


class _MnistPixels:
    """MNIST images of manifest records, reading each IDX container once."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self._containers: dict[str, np.ndarray] = {}

    def image(self, record) -> np.ndarray:
        from vgs.corpora.mnist import read_idx

        container, _, index = record.source.partition("#")
        if container not in self._containers:
            arr = read_idx(self.manifest.resolve(record))
            if arr.ndim != 3 or arr.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
                raise DataError(f"{self.manifest.resolve(record)}: expected {DIGIT_SIZE}x{DIGIT_SIZE} images, "
                                f"got shape {arr.shape}", hint="re-fetch MNIST: dvc repro fetch@mnist")
            self._containers[container] = arr
        arr = self._containers[container]
        try:
            i = int(index)
            return arr[i]
        except (ValueError, IndexError):
            raise DataError(f"MNIST record {record.id}: source {record.source!r} does not point into "
                            f"{container} ({len(arr)} images)",
                            hint="regenerate the manifest: dvc repro prepare@mnist") from None


# ----------------------------------------------------------------------------------------------
# Planning: every random choice, made in one process
# ----------------------------------------------------------------------------------------------
def _rng(seed: int, split: str, purpose: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % 2**63, _SPLIT_CODE[split], purpose, *more])


def _mnist_stream(records: list, seed: int, split: str):
    """The split's MNIST records in seeded permutations, one after another (each epoch a new one),
    so images are used evenly before any repeats."""
    epoch = 0
    while True:
        for i in _rng(seed, split, _MNIST, epoch).permutation(len(records)).tolist():
            yield records[i]
        epoch += 1


def plan_scenes(config: DigitScenesConfig, mnist: Manifest, fsdd: Manifest | None, seed: int) -> list[dict]:
    """Every scene and caption (scenes.json entries without the rendered sizes)."""
    config.validate()
    rows, cols = config.grid
    cell_h, cell_w = config.cell
    n = config.digits_per_scene
    cells_all = [(r, c) for r in range(rows) for c in range(cols)]
    by_split = {s: [r for r in mnist.records if r.split == s] for s in SPLITS}
    fsdd_index = _fsdd_index(fsdd) if "en" in config.languages else {}
    scenes: list[dict] = []
    for split in SPLITS:
        size = config.sizes[split]
        pool = by_split[split]
        if len(pool) < n:
            raise DataError(f"MNIST split {split!r} has {len(pool)} image(s); a scene needs {n} distinct ones",
                            hint="check data/manifests/mnist.jsonl (dvc repro prepare@mnist), or lower "
                                 f"{SECTION}.digits_per_scene")
        if "en" in config.languages and not fsdd_index.get(split):
            raise DataError(f"FSDD split {split!r} has no recordings, so its scenes get no English captions",
                            hint="check data/manifests/fsdd.jsonl (dvc repro prepare@fsdd), or drop en from "
                                 f"{SECTION}.languages")
        stream = _mnist_stream(pool, seed, split)
        for i in range(size):
            rng = _rng(seed, split, _SCENE, i)
            chosen: list = []
            seen: set[str] = set()
            while len(chosen) < n:              # n distinct images (a repeat only at an epoch seam)
                rec = next(stream)
                if rec.id not in seen:
                    seen.add(rec.id)
                    chosen.append(rec)
            if n < len(cells_all):
                picked = sorted(rng.choice(len(cells_all), size=n, replace=False).tolist())
                cells = [cells_all[k] for k in picked]
            else:
                cells = list(cells_all)
            jitter = rng.integers(-config.jitter, config.jitter + 1, size=(n, 2)).tolist()
            grid = [[-1] * cols for _ in range(rows)]
            digits = []
            for rec, (r, c), (dy, dx) in zip(chosen, cells, jitter):
                y = min(max(r * cell_h + (cell_h - DIGIT_SIZE) // 2 + dy, 0), config.canvas - DIGIT_SIZE)
                x = min(max(c * cell_w + (cell_w - DIGIT_SIZE) // 2 + dx, 0), config.canvas - DIGIT_SIZE)
                grid[r][c] = int(rec.label)
                digits.append({"label": int(rec.label), "cell": [r, c], "yx": [int(y), int(x)], "mnist": rec.id})
            scene_id = f"ds-{split}-{i:06d}"
            scene = {"id": scene_id, "split": split, "image": f"{split}/{scene_id}.png", "grid": grid,
                     "digits": digits, "captions": {}}
            for lang in config.languages:
                scene["captions"][lang] = _plan_caption(config, scene, lang, seed, split, i, fsdd_index)
            scenes.append(scene)
    return scenes


def _fsdd_index(fsdd: Manifest | None) -> dict:
    """split -> speaker -> digit -> records (sorted by id)."""
    if fsdd is None:
        raise DataError("the en view needs the FSDD manifest", hint="pass data/manifests/fsdd.jsonl")
    index: dict = {}
    for r in sorted(fsdd.records, key=lambda r: r.id):
        if r.speaker is None:
            raise DataError(f"FSDD record {r.id} has no speaker", hint="regenerate it: dvc repro prepare@fsdd")
        index.setdefault(r.split, {}).setdefault(r.speaker, {}).setdefault(int(r.label), []).append(r)
    return index


def _plan_caption(config: DigitScenesConfig, scene: dict, lang: str, seed: int, split: str, i: int,
                  fsdd_index: dict) -> dict:
    rng = _rng(seed, split, _CAPTION, i, _LANGUAGE_CODE[lang])
    rows, cols = config.grid
    occupied = {tuple(d["cell"]): d["label"] for d in scene["digits"]}
    order = [cell for cell in reading_order(rows, cols, lang) if cell in occupied]
    k = config.digits_per_caption
    combos = list(combinations(range(len(order)), k))
    named = [order[j] for j in combos[int(rng.integers(len(combos)))]]
    digits = [int(occupied[cell]) for cell in named]
    uttid = f"{scene['id']}-{lang}"
    caption = {"uttid": uttid, "wav": f"{split}/{uttid}.wav", "text": " ".join(map(str, digits)),
               "digits": digits, "cells": [list(c) for c in named]}
    if LANGUAGES[lang].source == "fsdd":
        speakers = fsdd_index[split]
        able = sorted(s for s, by_digit in speakers.items() if all(d in by_digit for d in digits))
        if not able:
            raise DataError(f"FSDD split {split!r} has no speaker with recordings of all of the digits "
                            f"{caption['text']} (scene {scene['id']})",
                            hint="check data/manifests/fsdd.jsonl: every split needs a speaker with all ten digits")
        speaker = able[int(rng.integers(len(able)))]
        sources = []
        for d in sorted(set(digits)):                 # distinct takes for a repeated digit when possible
            takes = speakers[speaker][d]
            count = digits.count(d)
            picks = rng.choice(len(takes), size=count, replace=count > len(takes)).tolist()
            sources.append((d, [takes[p].id for p in picks]))
        queue = {d: list(ids) for d, ids in sources}
        caption.update(speaker=speaker, synthetic=False, fsdd=[queue[d].pop(0) for d in digits],
                       gaps_ms=[int(g) for g in rng.integers(config.gap_ms[0], config.gap_ms[1] + 1,
                                                             size=max(len(digits) - 1, 0))])
    else:
        variant = config.voices[int(rng.integers(len(config.voices)))]
        voice = {"language": LANGUAGES[lang].espeak_voice, "variant": variant,
                 "rate": int(rng.integers(config.rate[0], config.rate[1] + 1)),
                 "pitch": int(rng.integers(config.pitch[0], config.pitch[1] + 1)),
                 "pitch_range": int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
                 "word_gap": int(rng.integers(config.word_gap[0], config.word_gap[1] + 1)),
                 "seed": int(rng.integers(2**31 - 1))}
        caption.update(speaker=f"espeak-{voice['language']}+{variant}", synthetic=True, voice=voice)
    return caption


# ----------------------------------------------------------------------------------------------
# Rendering: a pure function of the plan (runs in worker processes)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _RenderSettings:
    out: str
    canvas: int
    sample_rate: int
    peak: float


def _render_scene(args) -> dict:
    """Write one scene's PNG and caption WAVs; return {uttid: num_samples}."""
    settings, scene, images, fsdd_paths = args
    from PIL import Image

    out = Path(settings.out)
    canvas = np.zeros((settings.canvas, settings.canvas), dtype=np.uint8)
    for digit, image in zip(scene["digits"], images):
        y, x = digit["yx"]
        region = canvas[y:y + DIGIT_SIZE, x:x + DIGIT_SIZE]
        np.maximum(region, image, out=region)
    Image.fromarray(canvas).save(out / "images" / scene["image"], format="PNG")
    sizes = {}
    for lang, cap in scene["captions"].items():
        if cap["synthetic"]:
            from vgs.corpora.espeak import SAMPLE_RATE, shared_espeak
            v = cap["voice"]
            pcm = shared_espeak().synthesize(cap["text"], v["language"], v["variant"], rate=v["rate"],
                                             pitch=v["pitch"], pitch_range=v["pitch_range"],
                                             word_gap=v["word_gap"], seed=v["seed"])
            audio = _resample(pcm.astype(np.float64) / 32768.0, SAMPLE_RATE, settings.sample_rate)
        else:
            pieces = []
            for j, rec_id in enumerate(cap["fsdd"]):
                if j:
                    pieces.append(np.zeros(int(round(cap["gaps_ms"][j - 1] * settings.sample_rate / 1000))))
                pieces.append(_read_fsdd(fsdd_paths[rec_id], settings.sample_rate))
            audio = np.concatenate(pieces)
        pcm16 = _normalise(audio, settings.peak, cap["uttid"])
        _write_wav(out / "wavs" / lang / cap["wav"], pcm16, settings.sample_rate)
        sizes[cap["uttid"]] = int(len(pcm16))
    return sizes


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x
    from scipy.signal import resample_poly
    g = math.gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g)


_fsdd_cache: dict[str, np.ndarray] = {}


def _read_fsdd(path: str, rate: int) -> np.ndarray:
    if path not in _fsdd_cache:
        from vgs.corpora.audio_info import read_audio
        samples, sr = read_audio(path)
        _fsdd_cache[path] = _resample(samples.astype(np.float64).mean(axis=1), sr, rate)
    return _fsdd_cache[path]


def _normalise(audio: np.ndarray, peak: float, uttid: str) -> np.ndarray:
    top = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if top <= 0.0:
        raise AudioError(f"caption {uttid} is silent", hint="check its FSDD recordings or eSpeak voice")
    return np.round(audio * (peak * 32767.0 / top)).astype(np.int16)


def _write_wav(path: Path, pcm16: np.ndarray, rate: int) -> None:
    # Encoded in memory: soundfile's close() on a real file calls fsync, which took 3 ms per file.
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, pcm16, rate, subtype="PCM_16", format="WAV")
    path.write_bytes(buf.getvalue())


# ----------------------------------------------------------------------------------------------
# Building the corpus
# ----------------------------------------------------------------------------------------------
def build_digitscenes(out_dir: str | Path, mnist: Manifest, fsdd: Manifest | None,
                      config: DigitScenesConfig, seed: int, progress: bool = True) -> dict:
    """Plan, render and write the corpus to `out_dir` atomically. Returns a summary."""
    config.validate()
    out_dir = Path(out_dir)
    espeak = None
    if any(LANGUAGES[lang].source == "espeak" for lang in config.languages):
        from vgs.corpora.espeak import shared_espeak
        espeak = shared_espeak()                    # fails early if eSpeak cannot load
        for lang in config.languages:
            if LANGUAGES[lang].source == "espeak":
                for variant in config.voices:
                    espeak.check_voice(LANGUAGES[lang].espeak_voice, variant)
    scenes = plan_scenes(config, mnist, fsdd, seed)
    pixels = _MnistPixels(mnist)
    mnist_by_id = {r.id: r for r in mnist.records}
    fsdd_by_id = {r.id: r for r in fsdd.records} if fsdd is not None else {}
    settings_peak = 10 ** (config.peak_dbfs / 20)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            for lang in config.languages:
                (tmp / "wavs" / lang / split).mkdir(parents=True)
        settings = _RenderSettings(out=str(tmp), canvas=config.canvas, sample_rate=config.sample_rate,
                                   peak=settings_peak)

        def tasks():
            for scene in scenes:
                images = [pixels.image(mnist_by_id[d["mnist"]]) for d in scene["digits"]]
                paths = {rid: str(fsdd.resolve(fsdd_by_id[rid]))
                         for cap in scene["captions"].values() for rid in cap.get("fsdd", [])}
                yield settings, scene, images, paths

        results = _run(tasks(), len(scenes), config.num_workers, progress)
        for scene, sizes in zip(scenes, results):
            for cap in scene["captions"].values():
                cap["num_samples"] = sizes[cap["uttid"]]
        _write_outputs(tmp, scenes, config, mnist, fsdd, seed, espeak.version if espeak else None)
    return _summary(scenes, config)


def _run(tasks: Iterable, total: int, num_workers: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc="digitscenes", unit="scene", disable=not progress)
    results = []
    try:
        if num_workers <= 1:
            for task in tasks:
                results.append(_render_scene(task))
                bar.update()
        else:
            # spawn: workers start clean (no inherited eSpeak or thread state).
            with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
                for sizes in pool.imap(_render_scene, tasks, chunksize=16):
                    results.append(sizes)
                    bar.update()
    finally:
        bar.close()
    return results


def _write_outputs(tmp: Path, scenes: list[dict], config: DigitScenesConfig, mnist: Manifest,
                   fsdd: Manifest | None, seed: int, espeak_version: str | None) -> None:
    for lang in config.languages:
        for split in SPLITS:
            data = []
            for scene in scenes:
                if scene["split"] != split:
                    continue
                cap = scene["captions"][lang]
                data.append({"uttid": cap["uttid"], "speaker": cap["speaker"], "wav": cap["wav"],
                             "image": scene["image"], "text": cap["text"], "synthetic": cap["synthetic"],
                             "digits": cap["digits"]})
            doc = {"image_base_path": "images", "audio_base_path": f"wavs/{lang}", "data": data}
            (tmp / f"{lang}_{split}.json").write_text(json.dumps(doc, indent=1) + "\n")
    meta = {"seed": seed, "canvas": config.canvas, "grid": list(config.grid), "cell": list(config.cell),
            "digits_per_scene": config.digits_per_scene, "digits_per_caption": config.digits_per_caption,
            "sample_rate": config.sample_rate, "languages": {
                lang: {"reading_order": LANGUAGES[lang].reading, "synthetic": LANGUAGES[lang].source == "espeak"}
                for lang in config.languages},
            "espeak_ng": espeak_version}
    (tmp / "scenes.json").write_text(json.dumps({"meta": meta, "scenes": scenes}, indent=None,
                                                separators=(",", ":")) + "\n")
    (tmp / "README.txt").write_text(_readme(scenes, config, fsdd, espeak_version))


def _readme(scenes: list[dict], config: DigitScenesConfig, fsdd: Manifest | None,
            espeak_version: str | None) -> str:
    rows, cols = config.grid
    counts = {s: sum(1 for sc in scenes if sc["split"] == s) for s in SPLITS}
    lines = [
        "digitscenes: spoken captions of MNIST digit scenes (built by vgs, stage `digitscenes`)",
        "",
        f"Scenes: {counts['train']} train, {counts['val']} val, {counts['test']} test. Each image "
        f"(images/<split>/<scene>.png, {config.canvas}x{config.canvas} 8-bit grayscale) shows "
        f"{config.digits_per_scene} MNIST digits on a {rows}x{cols} grid. Each language view has one caption "
        f"per image naming {config.digits_per_caption} of its digits in that language's reading order; the "
        "captions of one image in different languages are different descriptions, not translations.",
        "Audio: wavs/<lang>/<split>/<uttid>.wav, 16-bit PCM mono at "
        f"{config.sample_rate} Hz, peak-normalised to {config.peak_dbfs:g} dBFS.",
        "Manifests: <lang>_<split>.json (Places audio-caption layout); scenes.json holds each scene's digits, "
        "grid cells and pixel places, and how each caption was made.",
        "",
        "Views:",
    ]
    for lang in config.languages:
        info = LANGUAGES[lang]
        order = READING_TEXT[info.reading]
        if info.source == "fsdd":
            speakers = sorted({r.speaker for r in fsdd.records}) if fsdd is not None else []
            lines.append(f"  {lang}: REAL speech, read {order}. Recordings of the Free Spoken Digit Dataset, "
                         f"one speaker per caption, joined by {config.gap_ms[0]}-{config.gap_ms[1]} ms of "
                         f"silence. Speakers: {', '.join(speakers)}.")
        else:
            variants = ", ".join(f"{info.espeak_voice}+{v}" for v in config.voices)
            lines.append(f"  {lang}: SYNTHETIC speech, read {order}. eSpeak NG {espeak_version or ''} "
                         f"voices {variants}; rate {config.rate[0]}-{config.rate[1]} words/min, pitch "
                         f"{config.pitch[0]}-{config.pitch[1]}, pitch range {config.pitch_range[0]}-"
                         f"{config.pitch_range[1]}, drawn per caption; resampled from 22050 Hz.")
    lines += ["", "Splits follow the source corpora: a split's scenes use only that split's MNIST images and",
              "FSDD recordings (MNIST val is held out of MNIST train; FSDD test is takes 0-4).", "",
              "Credits:"] + [f"  {c}" for c in CREDITS] + [
              "  eSpeak NG text-to-speech (https://github.com/espeak-ng/espeak-ng), via the espeakng-loader wheel", ""]
    return "\n".join(lines)


def _summary(scenes: list[dict], config: DigitScenesConfig) -> dict:
    out = {"scenes": {s: sum(1 for sc in scenes if sc["split"] == s) for s in SPLITS}, "fits": {}}
    test = [s for s in scenes if s["split"] == "test"]
    for lang in config.languages:
        fits = fits_matrix(test, [s["captions"][lang] for s in test], lang)
        out["fits"][lang] = float(fits.sum(axis=1).mean())
    out["audio_seconds"] = {lang: sum(s["captions"][lang]["num_samples"] for s in scenes) / config.sample_rate
                            for lang in config.languages}
    return out
