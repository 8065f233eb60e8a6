"""Image-encoder pretraining: the CPU analogue of the thesis's ImageNet initialisation (Sec. 2.4.1).

The thesis starts its ResNet-50 from ImageNet classification weights. Offline there are none, and
a trunk trained from scratch spends the `cpu` profile's few hundred steps learning digit shapes
before retrieval can start (README, "CPU profile"). The faithful analogue is the same trunk trained
once, before any run, on a supervised task of this domain: the ten MNIST digit classes. Only
MNIST's training split is used; digitscenes draws its training scenes from that split and its
validation and test scenes from MNIST's others, so no evaluated image is seen here.

Each 28 x 28 digit is placed at a random offset in a `canvas` x `canvas` frame (32: one
digitscenes grid cell, whose jitter the offset imitates), the trunk's map is averaged over its
positions and a linear layer classifies it (cross-entropy, Adam, `steps` batches drawn with
replacement across steps, seeded). The classifier is dropped: every run with
`model.image_init: pretrained` loads the trunk and trains everything from there, its 1x1
embedding conv and pooling from torch's default init. `image_init: scratch` (the paper profile:
a ResNet-50 wants ImageNet, not MNIST) leaves the stage writing only its summary, saying so.

Output, written atomically: data/models/crabtree2021-pretrain/
    image_trunk.pt   {"trunk": state dict, "image_net", "in_channels"} (pretrained only)
    pretrain.json    what was trained, held-out accuracy on MNIST's validation split, time
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vgs.errors import ParamError, StoreError
from vgs.methods.crabtree2021.config import IMAGE_INITS, METHOD
from vgs.nn.resnet import ResNetTrunk, resnet_config
from vgs.params import Params
from vgs.store.feature_store import FeatureStore
from vgs.utils.atomic import atomic_path, atomic_write_json
from vgs.utils.seed import seed_everything

TRUNK_FILE = "image_trunk.pt"
SUMMARY_FILE = "pretrain.json"
EVAL_ITEMS = 2000        # held-out digits scored after training (MNIST validation split)
_KEYS = {"images", "steps", "batch_size", "lr", "canvas", "seed"}


@dataclass(frozen=True)
class PretrainConfig:
    image_init: str          # model.image_init of the shared section: scratch | pretrained
    image_net: str           # the runs' ResNet preset (model.image_net)
    in_channels: int
    images: str              # a labelled digit image store (MNIST image28)
    steps: int
    batch_size: int
    lr: float
    canvas: int
    seed: int


def pretrain_dir() -> Path:
    return Path("data") / "models" / f"{METHOD}-pretrain"


def load_pretrain_config(params: Params) -> PretrainConfig:
    section = params.profiled(METHOD)
    p = section.section("pretrain")
    unknown = sorted(set(p.keys()) - _KEYS)
    if unknown:
        raise ParamError(f"{p.key(unknown[0])} is not a key of {METHOD}.pretrain ({params.source})",
                         hint="known keys: " + ", ".join(sorted(_KEYS)))
    m = section.section("model")
    cfg = PretrainConfig(image_init=m.str("image_init", choices=IMAGE_INITS), image_net=m.str("image_net"),
                         in_channels=m.int("in_channels", min=1), images=p.str("images"),
                         steps=p.int("steps", min=1), batch_size=p.int("batch_size", min=2),
                         lr=p.float("lr", min=0.0), canvas=p.int("canvas", min=1), seed=p.int("seed"))
    if cfg.lr <= 0:
        raise ParamError(f"{p.key('lr')} must be > 0, got {cfg.lr} ({params.source})")
    return cfg


def _digits(cfg: PretrainConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, h, w) float32, labels (N,)) of one split of the labelled image store."""
    store = FeatureStore(cfg.images)
    shape = store.item_shape or store.config.get("item_shape")
    index = store.indices(split)
    labels = np.asarray(store.labels)[index]
    if len(index) == 0 or (labels < 0).any():
        raise StoreError(f"{cfg.images} has no labelled {split} images ({len(index)} items, "
                         f"{int((labels < 0).sum())} unlabelled)",
                         hint=f"{METHOD}.pretrain.images must be a digit store with class labels, e.g. "
                              "data/features/mnist/image28.zarr")
    store.load()
    images = np.stack([store.item(int(i)) for i in index]).astype(np.float32)
    images = images.reshape(len(index), *shape) if shape else images
    if images.ndim != 3 or images.shape[1] > cfg.canvas or images.shape[2] > cfg.canvas:
        raise ParamError(f"{METHOD}.pretrain.canvas = {cfg.canvas} is smaller than the images of {cfg.images} "
                         f"({tuple(images.shape[1:])}) or they are not grey 2-D images",
                         hint="set canvas to at least the image side (32 for MNIST's 28)")
    return images, labels.astype(np.int64)


def place(images: np.ndarray, canvas: int, rng: np.random.Generator) -> torch.Tensor:
    """Each image at a random offset in a zero canvas: (N, 1, canvas, canvas)."""
    n, h, w = images.shape
    out = np.zeros((n, 1, canvas, canvas), np.float32)
    ys, xs = rng.integers(0, canvas - h + 1, n), rng.integers(0, canvas - w + 1, n)
    for k in range(n):
        out[k, 0, ys[k]:ys[k] + h, xs[k]:xs[k] + w] = images[k]
    return torch.from_numpy(out)


def pretrain_trunk(cfg: PretrainConfig, progress: bool = True) -> tuple[ResNetTrunk, dict]:
    if cfg.in_channels != 1:
        raise ParamError(f"{METHOD}.model.in_channels = {cfg.in_channels}, but the digit images of "
                         f"{cfg.images} have 1 channel: a trunk pretrained on them cannot start this model",
                         hint=f"set {METHOD}.model.image_init: scratch for colour images")
    started = time.perf_counter()
    images, labels = _digits(cfg, "train")
    seed_everything(cfg.seed)
    trunk = ResNetTrunk(resnet_config(cfg.image_net), cfg.in_channels)
    head = torch.nn.Linear(trunk.num_features, int(labels.max()) + 1)
    optimizer = torch.optim.Adam([*trunk.parameters(), *head.parameters()], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    trunk.train()
    losses = []
    for _ in tqdm(range(cfg.steps), desc=f"{METHOD} image pretraining", disable=not progress, mininterval=5):
        rows = rng.choice(len(images), cfg.batch_size, replace=False)
        logits = head(trunk(place(images[rows], cfg.canvas, rng)).mean(dim=(2, 3)))
        loss = F.cross_entropy(logits, torch.from_numpy(labels[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    trunk.eval()
    held_out, held_labels = _digits(cfg, "val")
    held_out, held_labels = held_out[:EVAL_ITEMS], held_labels[:EVAL_ITEMS]
    with torch.no_grad():
        predicted = head(trunk(place(held_out, cfg.canvas, np.random.default_rng(cfg.seed + 1))).mean(dim=(2, 3)))
    accuracy = float((predicted.argmax(1).numpy() == held_labels).mean())
    tail = losses[-max(1, cfg.steps // 10):]
    return trunk, {"val_accuracy": accuracy, "val_items": len(held_labels), "train_images": len(images),
                   "final_loss": float(np.mean(tail)), "wall_seconds": round(time.perf_counter() - started, 1)}


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage crabtree2021-pretrain: the image trunk every run starts from (or a note that the
    runs start from scratch)."""
    cfg = load_pretrain_config(params)
    with atomic_path(pretrain_dir()) as tmp:
        tmp.mkdir(parents=True)
        if cfg.image_init == "scratch":
            atomic_write_json(tmp / SUMMARY_FILE, {"used": False, "config": asdict(cfg),
                                                   "why": f"{METHOD}.model.image_init is scratch"})
            return f"{pretrain_dir()}: not used ({METHOD}.model.image_init: scratch)"
        trunk, summary = pretrain_trunk(cfg, progress)
        torch.save({"trunk": trunk.state_dict(), "image_net": cfg.image_net, "in_channels": cfg.in_channels},
                   tmp / TRUNK_FILE)
        atomic_write_json(tmp / SUMMARY_FILE, {"used": True, "config": asdict(cfg), **summary})
    return (f"{pretrain_dir()}: {cfg.image_net} trunk, {cfg.steps} steps on {summary['train_images']} digits, "
            f"held-out accuracy {summary['val_accuracy']:.3f}, {summary['wall_seconds']:.0f} s")


def load_pretrained_trunk(encoder: torch.nn.Module, image_net: str, in_channels: int,
                          directory: Path | None = None) -> None:
    """Start a run's ResNetEncoder from the pretrained trunk; clear errors when it is missing or was
    pretrained for another structure."""
    path = (directory or pretrain_dir()) / TRUNK_FILE
    if not path.is_file():
        raise StoreError(f"{path} is missing, and this run's {METHOD}.model.image_init is pretrained",
                         hint=f"dvc repro {METHOD}-pretrain writes it when the shared {METHOD}.model.image_init "
                              "is pretrained")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if (saved["image_net"], saved["in_channels"]) != (image_net, in_channels):
        raise ParamError(f"{path} holds a {saved['image_net']} trunk with {saved['in_channels']} channel(s); this "
                         f"run's image encoder is {image_net} with {in_channels}",
                         hint=f"re-run dvc repro {METHOD}-pretrain, or set model.image_init: scratch for this run")
    encoder.trunk.load_state_dict(saved["trunk"])
