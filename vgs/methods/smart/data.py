"""SMART's inputs as in-memory tensors, and the signal generator's co-occurrence streams.

Images: the 32x32 store as is ([0, 1]). Audio: each utterance's log-mel frames, centre-cropped or
zero-padded at the end to a fixed 96 frames, scaled to [0, 1] with one affine map fitted on the
training split (percentiles `scale_percentiles` of all training frames map to 0 and 1, values
outside are clipped), then transposed to (mel band, frame) so a log-mel is an image with
frequency on the vertical axis. Padding is 0, the level of the quietest training frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vgs.errors import ParamError, StoreError, VgsError
from vgs.pairing.pairs import PairStore
from vgs.params import Params
from vgs.paths import pairs_path
from vgs.store.feature_store import FeatureStore

SPLITS = ("train", "val", "test")


@dataclass
class Modality:
    """One modality's items: x (N, 1, H, W) float32 in [0, 1], labels, splits, store indices.

    input_hw (H, W) comes from the store's metadata (an image store's item_shape; an audio store's
    feature dimension, the mel bands, by `smart.data.audio_frames`), and `size_origin` says so."""
    name: str
    store_path: str
    x: torch.Tensor
    labels: np.ndarray
    splits: np.ndarray
    ids: np.ndarray
    corpus: str
    description: dict
    input_hw: tuple[int, int]
    size_origin: str

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def require_input_hw(self, model_hw, model_source: str) -> None:
        """ParamError unless a model built for `model_hw` inputs (read from `model_source`) fits these items."""
        model_hw = tuple(int(v) for v in model_hw)
        if model_hw != self.input_hw:
            raise ParamError(f"{model_source} was built for {self.name} inputs of {model_hw[0]}x{model_hw[1]}, "
                             f"but {self.size_origin} give {self.input_hw[0]}x{self.input_hw[1]}",
                             hint="retrain it on these stores and params, or point smart.data back at the "
                                  "stores and sizes it was trained on")


def load_images(store_path: str | Path) -> Modality:
    store = FeatureStore(store_path)
    if store.modality != "image" or not store.item_shape:
        raise StoreError(f"{store_path} is not an image store (modality {store.modality!r})",
                         hint="smart.data.image_store must name an image feature store, e.g. "
                              "data/features/mnist/image32.zarr")
    if len(store.item_shape) != 2:
        raise StoreError(f"{store_path}: item_shape {list(store.item_shape)} is not (height, width)",
                         hint="SMART's image autoencoder reads one grey channel per item")
    x = torch.from_numpy(np.ascontiguousarray(store.images()))[:, None]
    h, w = (int(v) for v in store.item_shape)
    return Modality("image", str(store_path), x, store.labels.copy(), store.splits.copy(), store.ids.copy(),
                    store.corpus, {"shape": list(store.item_shape)}, (h, w),
                    f"smart.data.image_store {store_path} (item_shape {h}x{w})")


def audio_scale(store: FeatureStore, percentiles: tuple[float, float]) -> tuple[float, float]:
    """(lo, hi): the given percentiles of every training-split log-mel value."""
    train = store.indices("train")
    if len(train) == 0:
        raise StoreError(f"{store.path} has no training items to fit the audio scaling on")
    frames = np.concatenate(store.sequences(train))
    lo, hi = np.percentile(frames, percentiles)
    if not hi > lo:
        raise StoreError(f"{store.path}: training log-mels are constant; cannot scale them")
    return float(lo), float(hi)


def load_audio(store_path: str | Path, num_frames: int, percentiles: tuple[float, float]) -> Modality:
    store = FeatureStore(store_path)
    if store.modality != "audio":
        raise StoreError(f"{store_path} is not an audio store (modality {store.modality!r})",
                         hint="smart.data.audio_store must name a log-mel store, e.g. "
                              "data/features/fsdd/logmel96hop10.zarr")
    lo, hi = audio_scale(store, tuple(percentiles))
    # Raw-value padding (normalise=False) is 0, far below `lo`, so it clips to 0 like silence.
    fixed = store.fixed(range(len(store)), num_frames, normalise=False)
    x = np.clip((fixed - lo) / (hi - lo), 0.0, 1.0).transpose(0, 2, 1)
    lengths = store.lengths
    description = {"num_frames": num_frames, "num_mel_bins": store.dim, "scale_lo": lo, "scale_hi": hi,
                   "scale_percentiles": list(percentiles),
                   "cropped_items": int((lengths > num_frames).sum()),
                   "frame_shift_ms": store.config.get("frame_shift_ms"),
                   "frame_length_ms": store.config.get("frame_length_ms"),
                   "sample_rate": store.config.get("sample_rate"), "feature_config": store.config.get("name"),
                   "speakers": int(len(set(store.speakers))), "store": str(store_path)}
    return Modality("audio", str(store_path), torch.from_numpy(np.ascontiguousarray(x))[:, None],
                    store.labels.copy(), store.splits.copy(), store.ids.copy(), store.corpus, description,
                    (store.dim, num_frames),
                    f"smart.data.audio_store {store_path} ({store.dim} mel bands) and "
                    f"smart.data.audio_frames = {num_frames}")


@dataclass
class SmartData:
    image: Modality
    audio: Modality
    image_pairs: PairStore | None = None
    audio_pairs: PairStore | None = None

    def __getitem__(self, modality: str) -> Modality:
        return self.image if modality == "image" else self.audio

    def pairs(self, modality: str) -> PairStore:
        p = self.image_pairs if modality == "image" else self.audio_pairs
        if p is None:
            raise VgsError("pair stores were not loaded (load_data(..., pairs=True))")
        return p

    def summary(self) -> str:
        def part(m: Modality) -> str:
            counts = "/".join(str(len(m.indices(s))) for s in SPLITS)
            return f"{m.corpus.upper()} ({counts} train/val/test)"
        return f"{part(self.image)} + {part(self.audio)}"


def data_params(params: Params) -> Params:
    return params.section("smart.data")


def load_data(params: Params, pairs: bool = False) -> SmartData:
    d = data_params(params)
    image = load_images(d.str("image_store"))
    audio = load_audio(d.str("audio_store"), d.int("audio_frames", min=1),
                       tuple(d.list("audio_scale_percentiles")))
    data = SmartData(image, audio)
    if pairs:
        data.image_pairs = _pair_store(d, "image_pairs", anchor=image, partner=audio)
        data.audio_pairs = _pair_store(d, "audio_pairs", anchor=audio, partner=image)
    return data


def _pair_store(d: Params, key: str, anchor: Modality, partner: Modality) -> PairStore:
    name = d.str(key)
    store = PairStore(pairs_path(name))
    views = [v["store"] for v in store.views]
    if len(views) != 2 or Path(views[0]) != Path(anchor.store_path) or Path(views[1]) != Path(partner.store_path):
        raise VgsError(f"pair store {store.path} pairs {views}, but {d.key(key)} must anchor on "
                       f"{anchor.store_path} with partners from {partner.store_path}",
                       hint=f"point `pairing.{name}.views` at those stores (anchor first), or change "
                            f"smart.data.{anchor.name}_store / {partner.name}_store to match")
    return store


class CooccurrenceStream:
    """The signal generator's stream of teaching episodes for one anchor modality.

    Each element is a (anchor item, partner item) pair of the same concept, taken from the pair
    store: pair-store epoch e is shuffled with (seed, modality, e), and the epochs are laid end to
    end, so position p of the stream is fixed by the seed alone. Phases consume consecutive slices.
    """

    def __init__(self, pairs: PairStore, seed: int, modality: str, split: str = "train"):
        self.pairs = pairs
        self.seed = int(seed)
        self.code = 0 if modality == "image" else 1
        self.split = split
        self.epoch_size = len(pairs.tuples(split, 0))
        self._cache: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._cache:
            tuples = self.pairs.tuples(self.split, e)
            order = np.random.default_rng([self.seed, self.code, e]).permutation(len(tuples))
            self._cache = {e: tuples[order]}  # phases move forward: keep only the newest epoch
        return self._cache[e]

    def slice(self, start: int, count: int) -> np.ndarray:
        """(count, 2) [anchor index, partner index] for stream positions start .. start+count-1."""
        out = []
        pos = start
        while pos < start + count:
            e, offset = divmod(pos, self.epoch_size)
            take = min(self.epoch_size - offset, start + count - pos)
            out.append(self._epoch(e)[offset:offset + take])
            pos += take
        return np.concatenate(out).astype(np.int64)
