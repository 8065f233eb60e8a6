"""Typed configuration of one Mortazavi 2020 run, read from params.yaml (section `mortazavi2020`).

Shared keys (data, model, train, augment, export, profiles) and one entry per run under `runs`:
the five encoder pairs of Table 1 (gru_layers, dim) and the schedule comparison, each run's DVC
stages depending on its own entry only. A run may override any `train` key (e.g. `schedule`), and
`restart` adds the paper's warm restart from the best checkpoint (section 5.2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from vgs.errors import ParamError
from vgs.params import Params

METHOD = "mortazavi2020"
SCHEDULES = ("calr", "calwr", "cylr")


@dataclass(frozen=True)
class DataConfig:
    pairs: str                 # instance pair store (image first, then caption views)
    image_view: str
    caption_view: str
    corpus_root: str           # the corpus's raw folder; its scenes.json (digitscenes only) gives the oracle
    features_dir: str          # holds every store of the pair store (the stages depend on it)
    max_frames: int            # captions longer than this are left out (the paper: 8,192 MFCC frames)
    data_name: str             # what the tables say was used


@dataclass(frozen=True)
class ModelConfig:
    gru_layers: int
    dim: int                   # embedding size d of both branches (the paper's A)
    image_net: str             # a preset of vgs.nn.densenet
    conv_channels: int | None  # speech conv width; None: what Table 1's counts pin down
    in_channels: int           # image channels, checked against the image store (model.input_sizes)


@dataclass(frozen=True)
class RestartConfig:
    epochs: int
    lr_factor: float           # the paper restarts at half the initial learning rate


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int
    epochs: int
    lr: float
    margin: float              # Eq. 3's threshold; the paper's value was lost from our copy
    schedule: str              # calr | calwr | cylr
    calwr_t0_epochs: int       # CosineAnnealingWarmRestarts: first cycle length, epochs
    calwr_t_mult: int
    cylr_base_lr_factor: float # CyclicLR between lr * factor and lr
    cylr_step_epochs: float    # half a cycle, epochs
    restart: RestartConfig | None
    crop_pad: int              # random crops: pad by this many pixels, crop back to the image size
    hflip: bool                # a flip swaps left and right in a digit scene and so its caption
    checkpoint_every_seconds: float
    num_threads: int | None


@dataclass(frozen=True)
class RunConfig:
    run: str
    seed: int
    profile: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    export_batch: int

    def fingerprint_config(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in ("seed", "data", "model", "train")}

    @property
    def total_epochs(self) -> int:
        return self.train.epochs + (self.train.restart.epochs if self.train.restart else 0)


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
    # A run's own train keys override the shared ones (e.g. the schedule comparison).
    train = {**section.section("train").to_dict(), **(r.raw("train", {}) or {})}
    t = Params(train, section.key("train"), params.source)
    restart = None
    if r.raw("restart", None) is not None:
        rs = r.section("restart")
        restart = RestartConfig(epochs=rs.int("epochs", min=1), lr_factor=rs.float("lr_factor", min=0.0))
    divisor = m.int("dim_divisor", min=1)
    dim = r.int("dim", min=2)
    if dim % divisor or (dim // divisor) % 2:
        raise ParamError(f"{r.key('dim')} = {dim} is not divisible into an even size by "
                         f"{m.key('dim_divisor')} = {divisor} ({params.source})",
                         hint="the Bi-GRU has d/2 units per direction, so d / dim_divisor must be even")
    # conv_channels is the one optional key: params.yaml leaves it out to get Table 1's width.
    conv = m.raw("conv_channels", None)
    return RunConfig(
        run=run, seed=params.int("seed"), profile=params.profile(),
        data=DataConfig(pairs=d.str("pairs"), image_view=d.str("image_view"), caption_view=d.str("caption_view"),
                        corpus_root=d.str("corpus_root"), features_dir=d.str("features_dir"),
                        max_frames=d.int("max_frames", min=1), data_name=d.str("data_name")),
        model=ModelConfig(gru_layers=r.int("gru_layers", min=1), dim=dim // divisor, image_net=m.str("image_net"),
                          conv_channels=None if conv is None else m.int("conv_channels", min=1),
                          in_channels=m.int("in_channels", min=1)),
        train=TrainConfig(
            batch_size=t.int("batch_size", min=2), epochs=t.int("epochs", min=1), lr=t.float("lr", min=0.0),
            margin=t.float("margin", min=0.0), schedule=t.str("schedule", choices=SCHEDULES),
            calwr_t0_epochs=t.int("calwr_t0_epochs", min=1), calwr_t_mult=t.int("calwr_t_mult", min=1),
            cylr_base_lr_factor=t.float("cylr_base_lr_factor", min=0.0, max=1.0),
            cylr_step_epochs=t.float("cylr_step_epochs", min=0.1),
            restart=restart, crop_pad=t.int("crop_pad", min=0), hflip=t.bool("hflip"),
            checkpoint_every_seconds=t.float("checkpoint_every_seconds", min=1.0),
            num_threads=None if t.raw("num_threads") is None else t.int("num_threads", min=1)),
        export_batch=section.int("export.batch_size", min=1),
    )


def model_dir(run: str) -> Path:
    return Path("data") / "models" / METHOD / run


def embeddings_dir(run: str) -> Path:
    """val.h5 and test.h5 of a run (export.py)."""
    return Path("data") / "embeddings" / METHOD / run


def eval_path(run: str) -> Path:
    return Path("data") / "eval" / METHOD / f"{run}.json"
