"""Typed run configuration for pvae2018, read from params.yaml (section `pvae2018`).

Shared keys (data, net, train, eval, profiles) apply to every model; `pvae2018.models.<name>` holds
what differs per model (kind, modality, contrastive settings). The top-level `profile` picks
`pvae2018.profiles.cpu` or `.paper`, merged over the shared keys. The configuration types of
data.py, model.py and objective.py live here, as do the output paths, so that the stages that only
read results (evaluate, report) do not depend on the model code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from vgs.errors import ParamError, VgsError
from vgs.params import Params
from vgs.paths import DATA, results_dir
from vgs.store.feature_store import FeatureStore

PAPER_ID = "pvae2018"
SECTION = PAPER_ID
RESULTS = results_dir(PAPER_ID)


def model_dir(model: str) -> Path:
    return DATA / "models" / PAPER_ID / model


def embeddings_dir(model: str) -> Path:
    return DATA / "embeddings" / PAPER_ID / model


def eval_path(model: str) -> Path:
    return DATA / "eval" / PAPER_ID / f"{model}.json"


AUDIO, IMAGE = "audio", "image"
MODALITIES = (AUDIO, IMAGE)
KINDS = ("pvae", "jmvae", "vae")


@dataclass(frozen=True)
class DataConfig:
    """`pvae2018.data` of params.yaml, which gives every key (config.load_data_config)."""
    audio_store: str
    image_store: str
    pairs: str
    vad_threshold_db: float
    vad_context_frames: int
    vad_min_frames: int
    # Pixels minus their training mean are divided by this before the unit-variance Gaussian
    # likelihood, so it is the likelihood's standard deviation in pixel units (pixels in [0, 1]).
    # None: the training pixels' std (~0.31 for MNIST), i.e. standardised pixels.
    image_likelihood_std: float | None


@dataclass(frozen=True)
class NetConfig:
    """Sizes from params.yaml (`pvae2018.net`) and from the feature stores (input sizes)."""
    audio_dim: int                    # fbank bins: the audio store's `dim`
    image_size: int                   # image side: the image store's `item_shape`
    hidden: int                       # LSTM cells and FC units of pre-encoders and decoders
    image_channels: tuple             # encoder conv channels; the decoder mirrors them (16 -> 8 -> 1)
    latent_dim: int                   # each of z_s, z_a, z_i


@dataclass(frozen=True)
class Weights:
    """The terms of Eq. 9. `coherence` comes from params.yaml (`train.coherence_weight`) for every
    model; the others are per-model keys that most models leave out, so their defaults live here."""
    coherence: float                 # alpha
    contrastive: float = 0.0         # beta; 0 = PVAE (no contrastive)
    kernel_gamma: float = 1.0        # RBF kernel k(u, v) = exp(-gamma ||u - v||^2)
    margin: float = 0.5              # hinge margin delta
    zi_independence: float = 0.0     # not in the paper: weight of nHSIC(z_s, z_i); 0 = Eq. 9 as published


def input_sizes(cfg: DataConfig, audio_store: FeatureStore | None = None,
                image_store: FeatureStore | None = None) -> dict[str, int]:
    """The encoders' input sizes as the stores' metadata records them: fbank bins (`dim`) and the
    image side (`item_shape`). Opens the stores of `cfg` unless they are given."""
    audio_store = audio_store or FeatureStore(cfg.audio_store)
    image_store = image_store or FeatureStore(cfg.image_store)
    if audio_store.modality != "audio" or audio_store.dim < 1:
        raise VgsError(f"{cfg.audio_store} is not an audio feature store",
                       hint="point pvae2018.data.audio_store at an fbank store such as data/features/fsdd/fbank80.zarr")
    if image_store.item_shape is None:
        raise VgsError(f"{cfg.image_store} is not an image store",
                       hint="point pvae2018.data.image_store at an image store such as data/features/mnist/image28.zarr")
    height, width = image_store.item_shape
    if height != width or height % 4:
        # Two stride-2 convolutions and their transposes map only a square side divisible by 4
        # back onto itself (28 -> 7 -> 28).
        raise ParamError(f"pvae2018.data.image_store {cfg.image_store} holds {height}x{width} images "
                         f"(its item_shape); PVAE needs square images with a side divisible by 4")
    return {"audio_dim": audio_store.dim, "image_size": int(height)}


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
    net = NetConfig(**input_sizes(data), hidden=n.int("hidden", min=1), latent_dim=n.int("latent_dim", min=1),
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
    # Per-model keys are optional: an absent one takes its Weights default (Eq. 9 as published).
    contrastive = m.float("contrastive_weight", Weights.contrastive, min=0)
    if contrastive and kind != "pvae":
        raise ParamError(f"{m.key('contrastive_weight')}: only kind pvae has the shared latent the contrastive "
                         f"term needs, this model is {kind}")
    independence = m.float("zi_independence_weight", Weights.zi_independence, min=0)
    if independence and kind != "pvae":
        raise ParamError(f"{m.key('zi_independence_weight')}: only kind pvae has z_s and z_i, this model is {kind}")
    weights = Weights(coherence=t.float("coherence_weight", min=0), contrastive=contrastive,
                      kernel_gamma=m.float("kernel_gamma", Weights.kernel_gamma, min=1e-9),
                      margin=m.float("margin", Weights.margin, min=0),
                      zi_independence=independence)
    return RunConfig(profile=profile, seed=params.int("seed"), data=data, net=net, train=train,
                     model=ModelConfig(model, kind, modality, weights))
