"""Typed run configuration for pvae2018, read from params.yaml (section `pvae2018`).

Shared keys (data, net, train, eval, profiles) apply to every model; `pvae2018.models.<name>` holds
what differs per model (kind, modality, contrastive settings). The top-level `profile` picks
`pvae2018.profiles.cpu` or `.paper`, merged over the shared keys.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vgs.errors import ParamError
from vgs.methods.pvae2018.data import DataConfig
from vgs.methods.pvae2018.model import KINDS, MODALITIES, NetConfig
from vgs.methods.pvae2018.objective import Weights
from vgs.params import Params

SECTION = "pvae2018"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    grad_clip: float
    length_sort_batches: int  # samples of this many batches are sorted by length together (1: off)
    val_every: int           # validation purity logged every N epochs (0: never)
    val_images: int          # validation images used for that check (balanced sample)
    checkpoint_every_seconds: float


@dataclass(frozen=True)
class ModelConfig:
    name: str
    kind: str
    modality: str | None
    weights: Weights


@dataclass(frozen=True)
class RunConfig:
    profile: str
    seed: int
    data: DataConfig
    net: NetConfig
    train: TrainConfig
    model: ModelConfig

    def fingerprint_dict(self) -> dict:
        """What defines the trained weights (not checkpoint cadence or logging)."""
        d = asdict(self)
        for k in ("val_every", "val_images", "checkpoint_every_seconds"):
            d["train"].pop(k)
        d.pop("profile")  # the merged values, not the profile's name, define the run
        if not d["model"]["weights"]["zi_independence"]:
            # Off is Eq. 9 as published; runs trained before the term existed keep their fingerprint.
            d["model"]["weights"].pop("zi_independence")
        return d


def model_names(params: Params) -> list[str]:
    return list(params.section(f"{SECTION}.models").keys())


def _optional_positive(p: Params, key: str) -> float | None:
    return None if p.raw(key) is None else p.float(key, min=1e-6)


def load_data_config(params: Params) -> DataConfig:
    """`pvae2018.data` (pass the params root or the pvae2018 section)."""
    p = params.section(SECTION) if params.has(SECTION) else params
    d = p.section("data")
    vad = d.section("vad")
    return DataConfig(audio_store=d.str("audio_store"), image_store=d.str("image_store"), pairs=d.str("pairs"),
                      vad_threshold_db=vad.float("threshold_db", min=1e-3),
                      vad_context_frames=vad.int("context_frames", min=0),
                      vad_min_frames=vad.int("min_frames", min=1),
                      image_likelihood_std=_optional_positive(d, "image_likelihood_std"))


def load_run_config(params: Params, model: str, profile: str | None = None) -> RunConfig:
    profile = profile or params.profile()
    p = params.profiled(SECTION, profile)
    if model not in p.section("models").keys():
        raise ParamError(f"{SECTION}.models has no model {model!r}",
                         hint="known models: " + ", ".join(p.section("models").keys()))
    data = load_data_config(p)
    n = p.section("net")
    channels = n.list("image_channels")
    if len(channels) != 2 or not all(isinstance(c, int) and c > 0 for c in channels):
        raise ParamError(f"{n.key('image_channels')} must be two positive integers, got {channels!r}")
    net = NetConfig(hidden=n.int("hidden", min=1), latent_dim=n.int("latent_dim", min=1),
                    image_channels=tuple(channels))
    t = p.section("train")
    train = TrainConfig(epochs=t.int("epochs", min=1), batch_size=t.int("batch_size", min=2), lr=t.float("lr", min=0),
                        grad_clip=t.float("grad_clip", min=0),
                        length_sort_batches=t.int("length_sort_batches", min=1), val_every=t.int("val_every", min=0),
                        val_images=t.int("val_images", min=10),
                        checkpoint_every_seconds=t.float("checkpoint_every_seconds", min=1))
    m = p.section(f"models.{model}")
    kind = m.str("kind", choices=KINDS)
    modality = m.str("modality", None, choices=MODALITIES, allow_none=True)
    if kind == "vae" and modality is None:
        raise ParamError(f"{m.key('modality')} is missing: a single-modality VAE needs audio or image")
    contrastive = m.float("contrastive_weight", 0.0, min=0)
    if contrastive and kind != "pvae":
        raise ParamError(f"{m.key('contrastive_weight')}: only kind pvae has the shared latent the contrastive "
                         f"term needs, this model is {kind}")
    independence = m.float("zi_independence_weight", 0.0, min=0)
    if independence and kind != "pvae":
        raise ParamError(f"{m.key('zi_independence_weight')}: only kind pvae has z_s and z_i, this model is {kind}")
    weights = Weights(coherence=t.float("coherence_weight", min=0), contrastive=contrastive,
                      kernel_gamma=m.float("kernel_gamma", 1.0, min=1e-9), margin=m.float("margin", 0.5, min=0),
                      zi_independence=independence)
    return RunConfig(profile=profile, seed=params.int("seed"), data=data, net=net, train=train,
                     model=ModelConfig(model, kind, modality, weights))
