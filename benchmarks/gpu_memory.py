"""Expected GPU memory per GPU for each paper's paper-profile model, counted without a GPU.

    .venv/bin/python benchmarks/gpu_memory.py            # prints the table (docs/gpu-memory.md)
    .venv/bin/python benchmarks/gpu_memory.py --real-corpus   # + Mortazavi / Crabtree at 224x224 RGB, ~10 s captions

--image-size / --image-channels set the images of the Mortazavi and Crabtree rows (default: the digitscenes
64x64 grey scenes). --real-corpus adds one row each for Mortazavi (DG4A2048) and Crabtree (baseline) at
224x224x3 photos (Places, Flickr8k, SpokenCOCO crops) and captions of --real-mortazavi-frames MFCC frames
(800 = 10 s at 12.5 ms) / --real-crabtree-frames log-mel frames (1024 = 10.24 s at 10 ms) per language.
Where the channels differ from params.yaml's `model.in_channels`, the run config is replaced in memory so
the image network's first convolution is built for them (no file is changed).

For one representative run per paper (paper profile of params.yaml, its batch size and input sizes)
this counts, per GPU, for one training step:

  * weights + gradients + Adam state: 4 + 4 + 8 bytes per trainable parameter (fp32; bf16 autocast
    keeps fp32 master weights, gradients and Adam moments), plus the (fp32) buffers;
  * activations: the bytes of every tensor autograd saves for backward during one forward pass and
    the loss, collected with torch.autograd.graph.saved_tensors_hooks and deduplicated by storage
    (views and tensors saved by two ops count once; parameters and buffers are excluded: they are
    counted above).

Counting runs on the meta device (no memory is allocated, no arithmetic is done) for every part whose
forward only looks at shapes. The speech encoders of Crabtree (ResDAVEnet) and Mortazavi (conv + Bi-GRU)
and the whole PVAE read utterance lengths as Python ints (int(lengths.max()), masks), which a meta tensor
cannot give, so those parts run a real CPU forward (and backward) at a small batch and their activations
are scaled linearly to the batch (`cpu@B=2 x B/2` in the method column). The loss of each model runs on
meta, fed meta embeddings.

bf16: torch.autocast does not run on meta tensors, so bf16 is emulated by casting the counted modules and
their inputs to bfloat16 (every conv/linear/RNN output, batch-norm and activation saved in bf16, as
CUDA autocast does for these ops; CUDA autocast keeps softmax, norms and losses in fp32, a small share
here), plus the bf16 copies of the weights autocast caches for the step (2 bytes per parameter used).

DDP over N GPUs with a global batch B: each GPU holds a full replica (weights, gradients, Adam state)
and runs B/N examples; meta parts are recounted at B/N, CPU-fallback parts scaled.

Not counted (state them when quoting the figures): the CUDA context (~0.5 GiB per process), the caching
allocator's fragmentation and reserve, cuDNN/cuBLAS workspaces (cuDNN RNNs keep a reserve buffer instead
of the per-op tensors counted here), transient tensors alive only inside one op or in backward (activation
gradients, at most a few of the largest activations at a time), DDP's gradient buckets (about one more
copy of the fp32 gradients unless gradient_as_bucket_view=True), the data loader's pinned batches, and
evaluation / validation passes.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vgs.params import Params  # noqa: E402

GIB = 1024 ** 3
NS = (1, 2, 4, 8)
SMALL_BATCH = 2           # batch of the real CPU fallback forwards
META = torch.device("meta")
DIGITSCENES_SIDE, DIGITSCENES_CHANNELS = 64, 1     # the digitscenes image store: 64x64 grey
REAL_SIDE, REAL_CHANNELS = 224, 3                  # Places / Flickr8k / SpokenCOCO: 224x224 RGB crops


def paper_params(path: Path) -> Params:
    data = yaml.safe_load(path.read_text())
    data["profile"] = "paper"
    return Params(data, "", str(path))


# -- counting ------------------------------------------------------------------------------------
def _storage_key(t: torch.Tensor):
    try:
        s = t.untyped_storage()
        return s._cdata, s.nbytes()
    except Exception:  # tensors without a storage (rare): count their own bytes
        return ("id", id(t)), t.numel() * t.element_size()


def module_keys(*modules: nn.Module) -> set:
    keys = set()
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            keys.add(_storage_key(t)[0])
    return keys


def saved_bytes(step: Callable[[], torch.Tensor], exclude: set, backward: bool = True) -> int:
    """Bytes of the distinct storages autograd saves while `step()` builds its loss (then backward)."""
    seen: dict = {}

    def pack(t):
        key, nbytes = _storage_key(t)
        if key not in exclude:
            seen[key] = max(seen.get(key, 0), nbytes)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    total = sum(seen.values())
    if backward:
        loss.backward()       # the graph is differentiable (free on meta)
    return total


def meta_empty(*shape, dtype=torch.float32):
    return torch.empty(*shape, device=META, dtype=dtype)


def n_params(*modules: nn.Module) -> int:
    seen, n = set(), 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


def n_trainable(*modules: nn.Module) -> int:
    seen, n = set(), 0
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


def buffer_bytes(*modules: nn.Module) -> int:
    return sum(b.numel() * b.element_size() for m in modules for b in m.buffers())


# -- one part of a model: counted on meta at any batch, or on the CPU at SMALL_BATCH and scaled ---------
@dataclass
class Part:
    name: str
    build: Callable[[], nn.Module]                 # builds the module on the current default device
    step: Callable[[nn.Module, int, torch.dtype, torch.device], torch.Tensor]   # (module, batch, dtype, device)
    on: str = "meta"                               # meta | cpu
    copies: int = 1                                # identical modules (Crabtree's three speech encoders)
    cast_params: Callable[[nn.Module], int] | None = None   # params autocast copies to bf16 (default: all)
    time_scale: float = 1.0                        # saved bytes x this (a longer input, linear in time)
    _cpu_cache: dict = field(default_factory=dict)

    def module(self, device) -> nn.Module:
        torch.manual_seed(0)
        with torch.device(device):
            return self.build()

    def activations(self, batch: int, dtype: torch.dtype) -> float:
        key = ("act", batch, dtype)
        if key not in self._cpu_cache:
            self._cpu_cache[key] = self._activations(batch, dtype)
        return self._cpu_cache[key]

    def _activations(self, batch: int, dtype: torch.dtype) -> float:
        """Saved bytes at `batch` (meta, or CPU at its batch, or CPU at SMALL_BATCH scaled linearly),
        plus under bf16 the bf16 weight copies autocast caches (once per step, not per example)."""
        if self.on == "meta":
            saved = self._count(META, batch, dtype)
        elif self.on == "cpu-exact":    # small enough to run on the CPU at the batch itself
            saved = self._count(torch.device("cpu"), batch, dtype)
        else:
            if dtype not in self._cpu_cache:
                self._cpu_cache[dtype] = self._count(torch.device("cpu"), SMALL_BATCH, dtype)
            saved = self._cpu_cache[dtype] * batch / SMALL_BATCH
        return self.copies * (saved * self.time_scale + self._weight_copies(dtype))

    def _weight_copies(self, dtype) -> int:
        if dtype == torch.float32:
            return 0
        if "weights" not in self._cpu_cache:
            m = self.module(META)
            self._cpu_cache["weights"] = self.cast_params(m) if self.cast_params else n_params(m)
        return self._cpu_cache["weights"] * torch.tensor([], dtype=dtype).element_size()

    def _count(self, device, batch: int, dtype) -> int:
        m = self.module(device)
        m.train()
        if dtype != torch.float32:
            m = m.to(dtype)
        exclude = module_keys(m)
        return saved_bytes(lambda: self.step(m, batch, dtype, device), exclude)

    @property
    def method(self) -> str:
        if self.on == "cpu-exact":
            return "cpu@B"
        return "meta" if self.on == "meta" else f"cpu@B={SMALL_BATCH} x B/{SMALL_BATCH}"


@dataclass
class Case:
    paper: str
    model: str
    batch: int
    params: int                 # trainable parameters held per GPU
    state_bytes: int            # weights + grads + Adam + buffers, fp32
    parts: list[Part]
    inputs: str                 # what the input sizes are, for the notes
    note: str = ""

    def activations(self, batch: int, dtype) -> float:
        return sum(p.activations(batch, dtype) for p in self.parts)

    @property
    def method(self) -> str:
        kinds = []
        for p in self.parts:
            label = f"{p.name}: {p.method}"
            kinds.append(label)
        return "; ".join(kinds)


def state_bytes(params: int, buffers: int) -> int:
    return 16 * params + buffers      # fp32 weights 4 + grads 4 + Adam exp_avg 4 + exp_avg_sq 4


# -- the five papers -------------------------------------------------------------------------------
def leidal_case(params: Params) -> Case:
    from vgs.methods.leidal2017.config import load_run_config, run_names
    from vgs.methods.leidal2017.model import LeidalModel, leidal_loss
    run = "ig1e-5" if "ig1e-5" in run_names(params) else run_names(params)[0]
    cfg = load_run_config(params, run)
    t, frames, bins, side = cfg.train, cfg.model.num_frames, 80, 28   # fbank80, MNIST 28x28

    def build():
        return LeidalModel(z_dim=cfg.model.z_dim, image_size=(side, side), num_frames=frames, num_bins=bins)

    def step(m, b, dtype, device):
        with torch.device(device):
            images = torch.empty(b, side, side, dtype=dtype)
            audio = torch.empty(b, frames, bins, dtype=dtype)
            return leidal_loss(m, images, audio, cfg.lambda_ig, t.lambda_wd, num_samples=t.num_samples,
                               margin=t.margin)["loss"]

    with torch.device(META):
        m = build()
    p = n_trainable(m)
    return Case("leidal2017", f"image+audio encoders ({run})", t.batch_pairs, p, state_bytes(p, buffer_bytes(m)),
                [Part("all", build, step)],
                f"MNIST 28x28, fbank {frames}x{bins}, {t.num_samples} samples/input")


def pvae_case(params: Params) -> Case:
    from vgs.methods.pvae2018 import config as pvae_config
    from vgs.methods.pvae2018.model import NetConfig, build_model
    from vgs.methods.pvae2018.objective import objective
    # load_run_config reads the input sizes from the feature stores, which need not exist here:
    # give it FSDD fbank80 (80 bins) and MNIST (28 x 28) for this call only.
    real_sizes = getattr(pvae_config, "input_sizes", None)
    if real_sizes is not None:
        pvae_config.input_sizes = lambda *a, **k: {"audio_dim": 80, "image_size": 28}
    try:
        cfg = pvae_config.load_run_config(params, "pvae")
    finally:
        if real_sizes is not None:
            pvae_config.input_sizes = real_sizes
    n = params.profiled("pvae2018").section("net")
    net = NetConfig(audio_dim=80, image_size=28, hidden=n.int("hidden"), latent_dim=n.int("latent_dim"),
                    image_channels=tuple(n.list("image_channels")))
    frames = 100    # FSDD/TIDIGITS digits after VAD: about 0.3-1 s; 100 frames (1 s) per utterance

    def build():
        return build_model(cfg.model.kind, net, cfg.model.modality)

    def step(m, b, dtype, device):
        batch = {"audio": torch.randn(b, frames, 80, dtype=dtype, device=device),
                 "audio_lengths": torch.full((b,), frames, dtype=torch.int64, device=device),
                 "image": torch.rand(b, 28, 28, dtype=dtype, device=device)}
        return objective(m, batch, cfg.model.weights, torch.Generator().manual_seed(0))[0]

    with torch.device(META):
        m = build()
    p = n_trainable(m)
    return Case("pvae2018", "PVAE (all nets, Eq. 9)", cfg.train.batch_size, p, state_bytes(p, buffer_bytes(m)),
                [Part("all", build, step, on="cpu")],
                f"fbank {frames}x80 (1 s, no padding), MNIST 28x28",
                "LSTMs read lengths as ints: CPU fallback")


def smart_case(params: Params) -> Case:
    from vgs.methods.smart.config import run_config
    from vgs.methods.smart.train import build_net
    from torch.nn import functional as F
    cfg = run_config(params, "hybrid")
    mcfg, t = cfg["model"], cfg["train"]
    frames = int(params.raw("smart.data.audio_frames"))
    hw = {"image": (32, 32), "audio": (frames, 96)}     # image32; logmel96hop10: 96 frames x 96 bands

    def build():
        return build_net(mcfg, hw)

    def make_step(mod):
        def step(net, b, dtype, device):
            x = torch.rand(b, 1, *hw[mod], dtype=dtype, device=device)
            target = torch.randn(b, mcfg["latent_dim"], dtype=dtype, device=device)
            z, y = net.autoencoders[mod](x)
            loss = t["weight_reconstruction"] * F.mse_loss(y, x)
            return loss + t["weight_guide"] * F.mse_loss(net.transcoders[mod](z), target)
        return step

    def cast(mod):
        return lambda net: n_params(*net.group(mod))

    with torch.device(META):
        net = build()
    p = n_trainable(net)
    # Both groups keep gradients and Adam state: each phase zeroes only its own optimiser's gradients.
    return Case("smart", "2 conv AEs + 2 transcoders, audio phase", t["batch_size"], p,
                state_bytes(p, buffer_bytes(net)),
                [Part("audio-phase step", build, make_step("audio"), cast_params=cast("audio"))],
                f"log-mel {frames}x96, image 32x32 (the audio phase; the image phase is smaller)")


def with_in_channels(cfg, channels: int):
    """The run config with `model.in_channels` = channels, in memory (params.yaml and the method code are not
    touched): the first conv of the image network is then built for `channels` input channels, as the
    method builds it when the image store holds that many (model.input_sizes)."""
    if channels == cfg.model.in_channels:
        return cfg
    return replace(cfg, model=replace(cfg.model, in_channels=channels))


def image_label(side: int, channels: int) -> str:
    return "" if (side, channels) == (DIGITSCENES_SIDE, DIGITSCENES_CHANNELS) else f", {side}x{side}x{channels}"


def mortazavi_case(params: Params, frames: int, label: str, side: int = 64, channels: int | None = None,
                   kind: str = "scene") -> Case:
    from vgs.methods.mortazavi2020.config import load_run_config
    from vgs.methods.mortazavi2020.model import InputSizes, build_pair
    from vgs.nn.retrieval_losses import hinge_all_pairs
    from vgs.nn.speech_rnn import SpeechRNNEmbedder
    cfg = load_run_config(params, "dg4a2048")    # the largest pair: G=4, d=2048, DenseNet-264
    cfg = with_in_channels(cfg, cfg.model.in_channels if channels is None else channels)
    sizes = InputSizes(caption_features=40, image_channels=cfg.model.in_channels)
    dim = cfg.model.dim

    def image_build():
        return build_pair(cfg.model, sizes).image

    def image_step(m, b, dtype, device):
        return m(torch.empty(b, cfg.model.in_channels, side, side, dtype=dtype, device=device)).float().sum()

    def speech_build():
        kw = {} if cfg.model.conv_channels is None else {"conv_channels": cfg.model.conv_channels}
        return SpeechRNNEmbedder(cfg.model.dim, cfg.model.gru_layers, in_features=40, **kw)

    def speech_step(m, b, dtype, device):
        x = torch.randn(b, frames, 40, dtype=dtype, device=device)
        return m(x, torch.full((b,), frames, dtype=torch.int64, device=device)).float().sum()

    def loss_step(_m, b, dtype, device):
        a = torch.empty(b, dim, dtype=dtype, device=device, requires_grad=True)
        c = torch.empty(b, dim, dtype=dtype, device=device, requires_grad=True)
        return hinge_all_pairs(a, c, margin=cfg.train.margin)

    with torch.device(META):
        pair = build_pair(cfg.model, sizes)
    p = n_trainable(pair)
    return Case("mortazavi2020", f"DG4A2048: DenseNet-264 + 4xBiGRU{label}", cfg.train.batch_size, p,
                state_bytes(p, buffer_bytes(pair)),
                [Part("image", image_build, image_step),
                 Part("speech", speech_build, speech_step, on="cpu"),
                 Part("loss", nn.Identity, loss_step, on="cpu-exact", cast_params=lambda m: 0)],
                f"{kind} {side}x{side}x{cfg.model.in_channels}, MFCC {frames}x40")


def mortazavi_long_case(base: Case, frames: int, base_frames: int) -> Case:
    """The speech branch at `frames` (Places' 8,192-frame cap), scaled linearly in time from base_frames
    (every saved tensor of conv, GRU and attention pooling is proportional to T)."""
    parts = []
    for p in base.parts:
        if p.name != "speech":
            parts.append(p)
            continue
        # The same CPU measurement (cached per dtype), saved bytes scaled in time; weight copies not.
        cache = {k: v for k, v in p._cpu_cache.items() if not (isinstance(k, tuple) and k[0] == "act")}
        parts.append(replace(p, time_scale=frames / base_frames, _cpu_cache=cache))
    case = replace(base, model=base.model.replace(f"T={base_frames}", f"T={frames}"), parts=parts,
                   inputs=base.inputs.replace(f"{base_frames}x40", f"{frames}x40"),
                   note=f"speech activations scaled x{frames}/{base_frames} from T={base_frames}")
    return case


def crabtree_case(params: Params, frames: int, side: int = 64, channels: int | None = None, label: str = "",
                  kind: str = "scene") -> Case:
    from vgs.methods.crabtree2021.config import load_run_config
    from vgs.methods.crabtree2021.model import InputSizes, build_model, image_encoder, speech_encoder
    from vgs.nn.retrieval_losses import multiview_loss
    cfg = load_run_config(params, "baseline")
    cfg = with_in_channels(cfg, cfg.model.in_channels if channels is None else channels)
    m, langs = cfg.model, list(cfg.data.caption_views)
    sizes = InputSizes(mel_bins=40, image_channels=m.in_channels)

    def image_step(enc, b, dtype, device):
        # The encoder's own forward checks its all-true mask with bool(), which meta cannot answer;
        # average pooling over an all-true mask is the plain mean over the h x w positions.
        assert m.pooling == "avg", m.pooling
        x = torch.empty(b, m.in_channels, side, side, dtype=dtype, device=device)
        return enc.feature_map(x).flatten(2).mean(2).float().sum()

    def speech_step(enc, b, dtype, device):
        x = torch.randn(b, frames, 40, dtype=dtype, device=device)
        return enc(x, torch.full((b,), frames, dtype=torch.int64, device=device)).float().sum()

    def loss_step(_m, b, dtype, device):
        views = [torch.empty(b, m.embed_dim, dtype=dtype, device=device, requires_grad=True)
                 for _ in range(1 + len(langs))]
        return multiview_loss(views, cfg.loss, cfg.train.scheme, step=0)

    with torch.device(META):
        model = build_model(m, langs, sizes)
    p = n_trainable(model)
    return Case("crabtree2021", f"baseline: {m.image_net} + {len(langs)}x ResDAVEnet{label}", cfg.train.batch_size, p,
                state_bytes(p, buffer_bytes(model)),
                [Part("image", lambda: image_encoder(m, m.in_channels), image_step),
                 Part(f"speech x{len(langs)}", lambda: speech_encoder(m, 40), speech_step, on="cpu",
                      copies=len(langs)),
                 Part("loss", nn.Identity, loss_step, on="cpu-exact", cast_params=lambda mod: 0)],
                f"{kind} {side}x{side}x{m.in_channels}, log-mel {frames}x40 per language")


# -- table ---------------------------------------------------------------------------------------
def gib(x: float) -> str:
    return f"{x / GIB:.2f}"


def run(params: Params, crabtree_frames: int, mortazavi_frames: int, places_frames: int,
        image_size: int = DIGITSCENES_SIDE, image_channels: int = DIGITSCENES_CHANNELS,
        real_corpus: bool = False, real_mortazavi_frames: int = 800, real_crabtree_frames: int = 1024) -> str:
    cases = [leidal_case(params), pvae_case(params), smart_case(params)]
    img = image_label(image_size, image_channels)
    mort = mortazavi_case(params, mortazavi_frames, f" T={mortazavi_frames}{img}", image_size, image_channels)
    cases += [mort]
    if places_frames:
        cases.append(mortazavi_long_case(mort, places_frames, mortazavi_frames))
    cases.append(crabtree_case(params, crabtree_frames, image_size, image_channels, img))
    if real_corpus:
        # Real photo corpora: RGB 224x224 crops, 16 kHz captions of up to ~10 s at each paper's feature hop.
        real = f", {REAL_SIDE}x{REAL_SIDE}x{REAL_CHANNELS}"
        cases.append(mortazavi_case(params, real_mortazavi_frames, f" T={real_mortazavi_frames}{real}",
                                    REAL_SIDE, REAL_CHANNELS, kind="photo"))
        cases.append(crabtree_case(params, real_crabtree_frames, REAL_SIDE, REAL_CHANNELS,
                                   f" T={real_crabtree_frames}{real}", kind="photo"))

    head = ["paper", "model", "batch", "params (M)", "W+G+Adam", "prec", "act @B", "N=1", "N=2", "N=4", "N=8",
            "counting"]
    rows = []
    for c in cases:
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            per_n = []
            for n in NS:
                if c.batch % n:
                    per_n.append("-")
                    continue
                per_n.append(gib(c.state_bytes + c.activations(c.batch // n, dtype)))
            rows.append([c.paper, c.model, str(c.batch), f"{c.params / 1e6:.2f}", gib(c.state_bytes), prec,
                         gib(c.activations(c.batch, dtype)), *per_n, c.method if prec == "fp32" else ""])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append("GiB per GPU; DDP with per-GPU batch B/N (weights, gradients and Adam state replicated).")
    lines.append("W+G+Adam: fp32 weights + gradients + Adam's two moments (16 B/parameter) + buffers.")
    lines.append("act @B: saved-for-backward tensors of one forward at the whole batch B (storage-deduplicated);")
    lines.append("bf16 rows: emulated autocast (bf16 activations + 2 B/parameter of cached bf16 weights).")
    lines.append("Inputs:")
    for c in cases:
        lines.append(f"  {c.paper} / {c.model}: {c.inputs}" + (f"; {c.note}" if c.note else ""))
    lines.append("Excluded: CUDA context (~0.5 GiB/process), allocator fragmentation/reserve, cuDNN/cuBLAS "
                 "workspaces, transient activation gradients in backward, DDP gradient buckets "
                 "(~4 B/parameter unless gradient_as_bucket_view=True), evaluation passes.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--crabtree-frames", type=int, default=200,
                    help="log-mel frames per caption (digitscenes: 3 spoken digits, ~1.3-2 s at 10 ms)")
    ap.add_argument("--mortazavi-frames", type=int, default=150,
                    help="MFCC frames per caption (digitscenes: 100-150 at 12.5 ms)")
    ap.add_argument("--places-frames", type=int, default=8192,
                    help="extra Mortazavi row at this caption length (the paper's cap); 0: none")
    ap.add_argument("--image-size", type=int, default=DIGITSCENES_SIDE,
                    help="image side of the Mortazavi / Crabtree rows (digitscenes: 64)")
    ap.add_argument("--image-channels", type=int, default=DIGITSCENES_CHANNELS,
                    help="image channels of the Mortazavi / Crabtree rows (digitscenes: 1, grey); the image "
                         "network's first layer is built for this many")
    ap.add_argument("--real-corpus", action="store_true",
                    help=f"add Mortazavi (DG4A2048) and Crabtree (baseline) rows at {REAL_SIDE}x{REAL_SIDE}x"
                         f"{REAL_CHANNELS} images (Places, Flickr8k, SpokenCOCO) and real-caption lengths")
    ap.add_argument("--real-mortazavi-frames", type=int, default=800,
                    help="MFCC frames per caption of the --real-corpus Mortazavi row (800 = 10 s at 12.5 ms)")
    ap.add_argument("--real-crabtree-frames", type=int, default=1024,
                    help="log-mel frames per caption of the --real-corpus Crabtree row (1024 = 10.24 s at 10 ms)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    params = paper_params(Path(args.params))
    print(run(params, args.crabtree_frames, args.mortazavi_frames, args.places_frames, args.image_size,
              args.image_channels, args.real_corpus, args.real_mortazavi_frames, args.real_crabtree_frames))
    print(f"(counted in {time.time() - t0:.0f} s, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
