"""Typed configuration of one Crabtree 2021 run, read from params.yaml (section `crabtree2021`).

Shared keys (data, model, loss, train, export, report, profiles) and one entry per run under
`runs`. One run is one configuration: a run entry may override `seed` and any key of `model` and
`train` (merged over the shared values), and may replace `loss` (a whole mapping: name and the
loss's own parameters, vgs/nn/retrieval_losses.py). Each run's DVC stages depend on its own entry
only. Extra seeds of a configuration are runs that repeat its entry with another `seed` (DVC's
foreach cannot multiply a run by a count); the report groups runs that differ only by seed
(`report.noise_runs`) into the noise floor.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from vgs.errors import ParamError
from vgs.nn.resdavenet import LANGUAGE_CONDITIONINGS, POOLING_VARIANTS, RESDAVENET_PRESETS
from vgs.nn.resnet import RESNET_PRESETS
from vgs.nn.retrieval_losses import SCHEMES, PairLoss, pair_loss_from_params
from vgs.params import Params

METHOD = "crabtree2021"
POOLINGS = tuple(POOLING_VARIANTS)            # avg, mhsa, mhsa_nocls, avg_internal_mhsa, transformer
ENCODERS = ("separate", "shared")
CONDITIONINGS = tuple(c for c in LANGUAGE_CONDITIONINGS if c is not None)   # basic, input, seq, chan
IMAGE_INITS = ("scratch", "pretrained")     # the image trunk's start (pretrain.py)
HEADS = 8                                      # the thesis's attention heads (Sec. 3.1.6.2)

# in_memory and num_workers say how batches are read (vgs/pairing/batch_loader.py reads them), not
# what is learnt: they stay out of DataConfig and so out of the run's fingerprint.
_DATA_KEYS = {"pairs", "image_view", "caption_views", "corpus_root", "features_dir", "max_frames", "train_scenes", "data_name",
              "in_memory", "num_workers"}
_MODEL_KEYS = {"speech_net", "speech_widths", "image_net", "in_channels", "embed_dim", "pooling", "dropout",
               "transformer_feedforward", "encoders", "language_conditioning", "language_dim",
               "embedding_norm", "image_init"}
_TRAIN_KEYS = {"scheme", "batch_size", "epochs", "lr", "warmup_fraction", "lr_decay", "lr_decay_every",
               "checkpoint_every_seconds", "num_threads"}
_RUN_KEYS = {"seed", "model", "loss", "train"}


@dataclass(frozen=True)
class DataConfig:
    # Every field is required: params.yaml (crabtree2021.data) states each one, and is its only default.
    pairs: str                          # 4-view instance pair store (image first, then the languages)
    image_view: str
    caption_views: tuple[str, ...]
    corpus_root: str                    # the corpus's raw folder; its scenes.json (digitscenes only) gives the oracle
    features_dir: str                   # holds every store of the pair store (the stages depend on it)
    max_frames: int | None              # captions longer than this are left out (None: none)
    train_scenes: int | None            # a fixed subset of the training datapoints (None: all)
    data_name: str

    @property
    def views(self) -> list[str]:
        return [self.image_view, *self.caption_views]


@dataclass(frozen=True)
class ModelConfig:
    # Required like DataConfig: params.yaml (crabtree2021.model) holds the defaults.
    speech_net: str                     # ResDAVEnet preset (vgs/nn/resdavenet.py)
    speech_widths: tuple[int, ...] | None   # stem + 4 layer widths; None: the preset's
    image_net: str                      # ResNet preset (vgs/nn/resnet.py)
    in_channels: int                    # checked against the image store (model.input_sizes)
    embed_dim: int
    pooling: str                        # avg | mhsa | mhsa_nocls | avg_internal_mhsa | transformer
    dropout: float                      # after the positional encoding (attention poolings only)
    transformer_feedforward: int
    encoders: str                       # separate: one ResDAVEnet per language; shared: one for all
    language_conditioning: str | None   # shared only: basic | input | seq | chan
    language_dim: int
    # None: the pooled outputs as they are (the thesis); a number: L2-normalised to that norm. The
    # hyperspheric loss always uses the unit sphere (Wang & Isola), whatever this says.
    embedding_norm: float | None
    image_init: str                     # scratch | pretrained (the crabtree2021-pretrain stage's trunk)


@dataclass(frozen=True)
class TrainConfig:
    # Required like DataConfig: params.yaml (crabtree2021.train) holds the defaults.
    scheme: str                         # full_graph | image_anchor | average_anchor | contrast_others
    batch_size: int
    epochs: int
    lr: float
    warmup_fraction: float              # linear warm-up over this fraction of all steps
    lr_decay: float                     # then x lr_decay every lr_decay_every steps
    lr_decay_every: int
    checkpoint_every_seconds: float
    num_threads: int | None


@dataclass(frozen=True)
class RunConfig:
    run: str
    seed: int
    profile: str
    data: DataConfig
    model: ModelConfig
    loss: PairLoss
    train: TrainConfig
    export_batch: int

    def fingerprint_config(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in ("seed", "data", "model", "loss", "train")}

    def config_without_seed(self) -> dict:
        """What two runs must share to be seeds of one configuration (the noise floor)."""
        d = self.fingerprint_config()
        d.pop("seed")
        return d


class _Layered:
    """Typed reads from a run's override mapping first, then the shared section: errors name the
    key where the value came from."""

    def __init__(self, shared: Params, over: Params | None):
        self.shared, self.over = shared, over

    def _src(self, key: str) -> Params:
        return self.over if self.over is not None and self.over.has(key) else self.shared

    def __getattr__(self, kind):
        if kind not in ("int", "float", "str", "bool", "raw", "list", "has", "key"):
            raise AttributeError(kind)
        return lambda key, *a, **kw: getattr(self._src(key), kind)(key, *a, **kw)


def _check_keys(section: Params, known: set[str], what: str) -> None:
    for key in section.keys():
        if key not in known:
            raise ParamError(f"{section.key(key)} is not a key of {what} ({section.source})",
                             hint="known keys: " + ", ".join(sorted(known)))


def run_names(params: Params) -> list[str]:
    return list(params.profiled(METHOD).section("runs").keys())


def _optional_int(p, key: str, min: int) -> int | None:
    return None if p.raw(key) is None else p.int(key, min=min)


def load_run_config(params: Params, run: str) -> RunConfig:
    section = params.profiled(METHOD)
    if not section.has(f"runs.{run}"):
        raise ParamError(f"{METHOD}.runs.{run} is missing ({params.source})",
                         hint="known runs: " + ", ".join(section.section("runs").keys()))
    entry = section.raw(f"runs.{run}")   # `name: {}` or `name:` (null): the shared configuration
    r = section.section(f"runs.{run}") if entry is not None else Params({}, section.key(f"runs.{run}"), params.source)
    _check_keys(r, _RUN_KEYS, f"a {METHOD} run")
    d = section.section("data")
    _check_keys(d, _DATA_KEYS, f"{METHOD}.data")
    shared_m, shared_t = section.section("model"), section.section("train")
    _check_keys(shared_m, _MODEL_KEYS, f"{METHOD}.model")
    _check_keys(shared_t, _TRAIN_KEYS, f"{METHOD}.train")
    over_m = r.section("model") if r.has("model") else None
    over_t = r.section("train") if r.has("train") else None
    for over, known, what in ((over_m, _MODEL_KEYS, "model"), (over_t, _TRAIN_KEYS, "train")):
        if over is not None:
            _check_keys(over, known, f"{METHOD}.{what}")
    m, t = _Layered(shared_m, over_m), _Layered(shared_t, over_t)

    # Data
    caption_views = d.list("caption_views")
    distinct = len(set(map(str, caption_views))) == len(caption_views)
    if not caption_views or not all(isinstance(v, str) for v in caption_views) or not distinct:
        raise ParamError(f"{d.key('caption_views')} must be a non-empty list of distinct view names, got "
                         f"{caption_views!r} ({params.source})", hint="e.g. [en, hi, ja]")
    image_view = d.str("image_view")
    if image_view in caption_views:
        raise ParamError(f"{d.key('caption_views')} lists the image view {image_view!r} ({params.source})")
    data = DataConfig(pairs=d.str("pairs"), image_view=image_view, caption_views=tuple(caption_views),
                      corpus_root=d.str("corpus_root"), features_dir=d.str("features_dir"),
                      max_frames=_optional_int(d, "max_frames", 1), train_scenes=_optional_int(d, "train_scenes", 2),
                      data_name=d.str("data_name"))

    # Loss: a run's `loss` mapping replaces the shared one (their parameters differ per loss).
    loss_section = r.section("loss") if r.has("loss") else section.section("loss")
    loss = pair_loss_from_params(loss_section)

    # Model
    speech_net = m.str("speech_net", choices=tuple(RESDAVENET_PRESETS))
    widths = m.raw("speech_widths")
    if widths is not None:
        if (not isinstance(widths, list) or len(widths) != 5
                or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)):
            raise ParamError(f"{m.key('speech_widths')} must be a list of 5 positive integers (stem and four "
                             f"residual layers), got {widths!r} ({params.source})", hint="e.g. [16, 32, 32, 64, 128]")
        widths = tuple(widths)
    pooling = m.str("pooling", choices=POOLINGS)
    embed_dim = m.int("embed_dim", min=2)
    encoders = m.str("encoders", choices=ENCODERS)
    conditioning = m.raw("language_conditioning")
    if conditioning is not None:
        conditioning = m.str("language_conditioning", choices=CONDITIONINGS)
        if encoders == "separate":
            raise ParamError(f"{m.key('language_conditioning')} = {conditioning!r} needs encoders: shared "
                             f"({params.source})", hint="separate encoders know their language; set it to null")
    elif encoders == "shared":
        conditioning = "basic"
    if pooling != "avg" and pooling != "avg_internal_mhsa" and embed_dim % HEADS:
        raise ParamError(f"{m.key('embed_dim')} = {embed_dim} is not divisible by the {HEADS} attention heads "
                         f"of pooling {pooling!r} ({params.source})")
    if pooling == "avg_internal_mhsa":
        penultimate = (widths or RESDAVENET_PRESETS[speech_net]["widths"])[-2]
        if penultimate % HEADS:
            raise ParamError(f"{m.key('speech_widths')}: the internal MHSA runs at width {penultimate}, which is "
                             f"not divisible by {HEADS} heads ({params.source})")
    norm = None if m.raw("embedding_norm") is None else m.float("embedding_norm", min=0.0)
    if norm is not None and norm <= 0:
        raise ParamError(f"{m.key('embedding_norm')} must be null or a number > 0, got {norm!r} ({params.source})")
    if loss.name == "hyperspheric":
        norm = 1.0   # Wang & Isola's loss lives on the unit hypersphere
    model = ModelConfig(
        speech_net=speech_net, speech_widths=widths,
        image_net=m.str("image_net", choices=tuple(RESNET_PRESETS)),
        in_channels=m.int("in_channels", min=1), embed_dim=embed_dim, pooling=pooling,
        dropout=m.float("dropout", min=0.0, max=1.0),
        transformer_feedforward=m.int("transformer_feedforward", min=1),
        encoders=encoders, language_conditioning=conditioning, language_dim=m.int("language_dim", min=1),
        embedding_norm=norm, image_init=m.str("image_init", choices=IMAGE_INITS))

    threads = t.raw("num_threads")
    train = TrainConfig(
        scheme=t.str("scheme", choices=SCHEMES), batch_size=t.int("batch_size", min=2),
        epochs=t.int("epochs", min=1), lr=t.float("lr", min=0.0),
        warmup_fraction=t.float("warmup_fraction", min=0.0, max=0.99),
        lr_decay=t.float("lr_decay", min=0.0, max=1.0), lr_decay_every=t.int("lr_decay_every", min=1),
        checkpoint_every_seconds=t.float("checkpoint_every_seconds", min=1.0),
        num_threads=None if threads is None else t.int("num_threads", min=1))
    if train.lr <= 0 or train.lr_decay <= 0:
        raise ParamError(f"{METHOD}.train: lr and lr_decay must be > 0 (run {run}, {params.source})")
    seed = r.int("seed") if r.has("seed") else params.int("seed")
    return RunConfig(run=run, seed=seed, profile=params.profile(), data=data, model=model, loss=loss, train=train,
                     export_batch=section.int("export.batch_size", min=1))


def report_settings(params: Params) -> dict:
    """`crabtree2021.report`: the seed group of the noise floor and the t-SNE's run and size."""
    section = params.profiled(METHOD)
    rep = section.section("report")
    runs = set(section.section("runs").keys())
    noise = rep.list("noise_runs")
    for name in noise:
        if name not in runs:
            raise ParamError(f"{rep.key('noise_runs')} names {name!r}, which is not a run ({params.source})",
                             hint="known runs: " + ", ".join(sorted(runs)))
    return {"noise_runs": list(noise), "tsne_run": rep.str("tsne_run"), "tsne_scenes": rep.int("tsne_scenes", min=10),
            "tsne_position": rep.int("tsne_position", min=0)}


def model_dir(run: str) -> Path:
    return Path("data") / "models" / METHOD / run


def embeddings_dir(run: str) -> Path:
    """val.h5 and test.h5 of a run (export.py)."""
    return Path("data") / "embeddings" / METHOD / run


def eval_path(run: str) -> Path:
    return Path("data") / "eval" / METHOD / f"{run}.json"


# -- view pairs and recall summaries (pure helpers shared by training, evaluation and the report) ----
def pair_key(a: str, b: str) -> str:
    """The key of a view pair in recall results ("image-en", "en-hi"), as recall_all_pairs names it."""
    return f"{a}-{b}"


def view_pair_keys(data: DataConfig) -> dict[str, list[str]]:
    """{"image": image-language pairs, "crosslingual": language-language pairs} in table order."""
    langs = list(data.caption_views)
    return {"image": [pair_key(data.image_view, lang) for lang in langs],
            "crosslingual": [pair_key(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]}


def recall_summary(rows: dict[str, dict], data: DataConfig, k: int = 10) -> dict[str, float]:
    """Mean avgR@k over the image pairs, the cross-lingual pairs and all pairs, from
    {pair: RecallResult.as_row()}. Epoch selection uses "all" (Sec. 3.1.2 of our README)."""
    groups = view_pair_keys(data)
    mean = lambda keys: float(sum(rows[p][f"avgR{k}"] for p in keys) / len(keys)) if keys else float("nan")  # noqa: E731
    return {"image": mean(groups["image"]), "crosslingual": mean(groups["crosslingual"]),
            "all": mean(groups["image"] + groups["crosslingual"])}
