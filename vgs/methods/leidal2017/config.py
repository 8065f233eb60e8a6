"""Typed configuration of one Leidal et al. 2017 run, read from params.yaml (section `leidal2017`).

The section holds shared keys (data, model, train, export, eval, profiles) and one entry per sweep
value under `runs`, so that DVC can make each run's stages depend on its own key only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    z_dim: int = 128
    num_frames: int = 100


@dataclass(frozen=True)
class TrainConfig:
    num_samples: int = 16
    batch_pairs: int = 128
    margin: float = 1.0
    lambda_wd: float = 1e-6
    lr: float = 1e-5
    betas: tuple[float, float] = (0.95, 0.999)
    eps: float = 1e-8
    lr_decay: float = 0.9
    lr_decay_every_epochs: int = 10
    epochs: int = 100
    pairs_per_epoch: int | None = None     # None: every anchor item once (MNIST train: 55,000)
    val_pairs: int = 1024                  # validation pairs scored at each epoch end (0: none)
    checkpoint_every_seconds: float = 120.0
    num_threads: int | None = None
    precision: str = "fp32"                # fp32 | bf16 (autocast of the encoders while training)
    # Not in the paper (0 and "step" are its training): lambda_IG rises linearly from 0 over the
    # first steps, and "cosine" anneals lr to 0 over the whole run instead of the step decay.
    lambda_ig_warmup_steps: int = 0
    lr_schedule: str = "step"              # step | cosine


@dataclass(frozen=True)
class ExportConfig:
    split: str = "test"
    num_samples: int = 16
    batch_size: int = 500


@dataclass(frozen=True)
class EvalConfig:
    inputs_per_modality: int | None = None  # None: the smaller modality's test count, both sides
    kmeans_k: int = 10
    svm_per_modality: int = 1076
    svm_train: int = 1600
    tsne_per_modality: int = 200


@dataclass(frozen=True)
class RunConfig:
    run: str
    lambda_ig: float
    seed: int
    profile: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

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
    ppe = t.raw("pairs_per_epoch", None)
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
            val_pairs=t.int("val_pairs", 1024, min=0),
            checkpoint_every_seconds=t.float("checkpoint_every_seconds", 120.0, min=1.0),
            num_threads=t.raw("num_threads", None) and t.int("num_threads", min=1),
            precision=t.str("precision", "fp32", choices=("fp32", "bf16")),
            lambda_ig_warmup_steps=t.int("lambda_ig_warmup_steps", 0, min=0),
            lr_schedule=t.str("lr_schedule", "step", choices=("step", "cosine"))),
        export=ExportConfig(split=e.str("split", "test", choices=("train", "val", "test")),
                            num_samples=e.int("num_samples", min=1), batch_size=e.int("batch_size", 500, min=1)),
        eval=EvalConfig(
            inputs_per_modality=v.raw("inputs_per_modality", None) and v.int("inputs_per_modality", min=2),
            kmeans_k=v.int("kmeans_k", min=2), svm_per_modality=v.int("svm_per_modality", min=2),
            svm_train=v.int("svm_train", min=4), tsne_per_modality=v.int("tsne_per_modality", min=0)),
    )


def model_dir(run: str) -> Path:
    return Path("data") / "models" / METHOD / run


def embeddings_path(run: str) -> Path:
    return Path("data") / "embeddings" / METHOD / f"{run}.h5"


def eval_path(run: str) -> Path:
    return Path("data") / "eval" / METHOD / f"{run}.json"
