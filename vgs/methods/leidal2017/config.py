"""Typed configuration of one Leidal et al. 2017 run, read from params.yaml (section `leidal2017`).

The section holds shared keys (data, model, train, export, eval, profiles) and one entry per sweep
value under `runs`, so that DVC can make each run's stages depend on its own key only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from vgs.errors import ParamError
from vgs.params import Params

METHOD = "leidal2017"


@dataclass(frozen=True)
class DataConfig:
    pairs: str            # pair store: anchor and partner views, per-epoch same-class pairs
    image_store: str      # feature store of the image view (MNIST image28)
    audio_store: str      # feature store of the audio view (fbank80 of FSDD or TIDIGITS)


@dataclass(frozen=True)
class ModelConfig:
    z_dim: int
    num_frames: int       # fbank frames after centre crop / zero pad (the input sizes come from the stores)


# No defaults here: params.yaml (`leidal2017`) gives every key, and the reader below requires it,
# so each value has one home.
@dataclass(frozen=True)
class TrainConfig:
    num_samples: int
    batch_pairs: int
    margin: float
    lambda_wd: float
    lr: float
    betas: tuple[float, float]
    eps: float
    lr_decay: float
    lr_decay_every_epochs: int
    epochs: int
    pairs_per_epoch: int | None            # None: every anchor item once (MNIST train: 55,000)
    val_pairs: int                         # validation pairs scored at each epoch end (0: none)
    checkpoint_every_seconds: float
    num_threads: int | None
    # fp32 | bf16: autocast of the encoders while training on the CPU. On a GPU the precision is
    # params.yaml `train.precision`, the one rule of every method (vgs/train/device.py).
    precision: str
    # Not in the paper (0 and "step" are its training): lambda_IG rises linearly from 0 over the
    # first steps, and "cosine" anneals lr to 0 over the whole run instead of the step decay.
    lambda_ig_warmup_steps: int
    lr_schedule: str                       # step | cosine


@dataclass(frozen=True)
class ExportConfig:
    split: str
    num_samples: int
    batch_size: int


@dataclass(frozen=True)
class EvalConfig:
    inputs_per_modality: int | None         # None: the smaller modality's test count, both sides
    kmeans_k: int
    svm_per_modality: int
    svm_train: int
    tsne_per_modality: int


@dataclass(frozen=True)
class RunConfig:
    run: str
    lambda_ig: float
    seed: int
    profile: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    export: ExportConfig
    eval: EvalConfig

    def fingerprint_config(self) -> dict:
        """What defines the trained weights (not export/eval settings, not the run's name)."""
        d = asdict(self)
        return {k: d[k] for k in ("lambda_ig", "seed", "data", "model", "train")}

    def to_dict(self) -> dict:
        return asdict(self)


def run_names(params: Params) -> list[str]:
    return list(params.section(f"{METHOD}.runs").keys())


def load_run_config(params: Params, run: str) -> RunConfig:
    section = params.profiled(METHOD)
    if not section.has(f"runs.{run}"):
        raise ParamError(f"{METHOD}.runs.{run} is missing ({params.source})",
                         hint="known runs: " + ", ".join(run_names(params)))
    r = section.section(f"runs.{run}")
    d = section.section("data")
    m = section.section("model")
    t = section.section("train")
    e = section.section("export")
    v = section.section("eval")
    betas = t.list("betas")
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ParamError(f"{t.key('betas')} must be two numbers in [0, 1), got {betas!r} ({params.source})")
    ppe = t.raw("pairs_per_epoch")
    return RunConfig(
        run=run,
        lambda_ig=r.float("lambda_ig", min=0.0),
        seed=params.int("seed"),
        profile=params.profile(),
        data=DataConfig(pairs=d.str("pairs"), image_store=d.str("image_store"), audio_store=d.str("audio_store")),
        model=ModelConfig(z_dim=m.int("z_dim", min=1), num_frames=m.int("num_frames", min=4)),
        train=TrainConfig(
            num_samples=t.int("num_samples", min=1), batch_pairs=t.int("batch_pairs", min=2),
            margin=t.float("margin", min=0.0), lambda_wd=t.float("lambda_wd", min=0.0),
            lr=t.float("lr", min=0.0), betas=(float(betas[0]), float(betas[1])), eps=t.float("eps", min=0.0),
            lr_decay=t.float("lr_decay", min=0.0, max=1.0),
            lr_decay_every_epochs=t.int("lr_decay_every_epochs", min=1),
            epochs=t.int("epochs", min=1),
            pairs_per_epoch=None if ppe is None else t.int("pairs_per_epoch", min=1),
            val_pairs=t.int("val_pairs", min=0),
            checkpoint_every_seconds=t.float("checkpoint_every_seconds", min=1.0),
            num_threads=t.raw("num_threads") and t.int("num_threads", min=1),
            precision=t.str("precision", choices=("fp32", "bf16")),
            lambda_ig_warmup_steps=t.int("lambda_ig_warmup_steps", min=0),
            lr_schedule=t.str("lr_schedule", choices=("step", "cosine"))),
        export=ExportConfig(split=e.str("split", choices=("train", "val", "test")),
                            num_samples=e.int("num_samples", min=1), batch_size=e.int("batch_size", min=1)),
        eval=EvalConfig(
            inputs_per_modality=v.raw("inputs_per_modality") and v.int("inputs_per_modality", min=2),
            kmeans_k=v.int("kmeans_k", min=2), svm_per_modality=v.int("svm_per_modality", min=2),
            svm_train=v.int("svm_train", min=4), tsne_per_modality=v.int("tsne_per_modality", min=0)),
    )


def model_dir(run: str) -> Path:
    return Path("data") / "models" / METHOD / run


def embeddings_path(run: str) -> Path:
    return Path("data") / "embeddings" / METHOD / f"{run}.h5"


def eval_path(run: str) -> Path:
    return Path("data") / "eval" / METHOD / f"{run}.json"
