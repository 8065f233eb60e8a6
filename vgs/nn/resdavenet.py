"""ResDAVEnet speech encoder (Harwath et al.; Crabtree 2021 Sec. 2.4.2.2) with padding-exact
masking, the pooling variants of Sec. 3.1.6 / Table 3.6 and the shared-encoder language
conditioning of Chapter 5 (Table 5.1).

Layout (widths w0..w4, kernel k = 9, padding k // 2 = 4, every conv bias-free and followed by BN):
  stem      Conv(in_bins -> w0) spanning all mel bins and one frame (Harwath's Conv2d(1, w0, (40, 1))
            written as Conv1d(in_bins, w0, 1): same weights, same count) - BN - ReLU
  layer i   (i = 1..4) two residual blocks; block = Conv1x9(stride s) - BN - ReLU - Conv1x9 - BN
            (+ shortcut) - ReLU; the first block of each layer has s = 2 and a Conv1x1(stride 2) - BN
            shortcut, the second s = 1 and the identity
  project   Conv1x1(w4 -> embed_dim, bias) only when embed_dim differs from w4 (the paper: no projection)
  pool      "avg" (masked mean, Sec. 3.1.6.1), "mhsa", "mhsa_nocls", "transformer" (vgs.nn.attention_pooling)
Harwath's Conv2d kernels of height 1 are Conv1d here (same parameter count; state-dict shapes differ).
Input (B, T, in_bins) log-mel frames + (B,) lengths; features (B, D, T') with T' = ceil(T / 16).

Length bookkeeping. A conv with kernel k (odd), padding k // 2, stride s maps L frames to
(L + 2 (k // 2) - k) // s + 1 = (L - 1) // s + 1 = ceil(L / s); the 1x1 stride-s shortcut gives the same,
so after the four stride-2 layers an utterance of L frames has ceil(ceil(ceil(ceil(L/2)/2)/2)/2) = ceil(L/16)
frames (`output_lengths`). Frames past that are padding.

Padding never changes an embedding (eval mode, exactly; train mode, see below):
  (a) the input's padded frames and every conv's input beyond the utterance's current length are
      zeroed (mask after each BN-ReLU and after each block), so each conv reads, at and past an
      utterance's end, exactly the zeros its own zero padding would supply if it were alone;
  (b) pooling reads only the frames the utterance owns. `pool_frames="real"` (default) is the
      avg_pool_len rule of Sec. 3.1.6.1 with the network's exact reduction ratio 2^4 = 16: output
      frame t stands for input frames [16 t, 16 t + 15] and is pooled only if all of them are real,
      i.e. the first floor(L / 16) frames (utterances shorter than 16 frames keep their ceil(L/16) = 1
      frame). `pool_frames="all"` pools all ceil(L/16) frames (also padding-invariant thanks to (a)).
      The thesis's literal formula, floor(L / round(max_sl / max_sl_out)) with per-batch maxima, is
      `thesis_avg_pool_len`; it is NOT padding-invariant (round(150 / 10) = 15 but round(140 / 9) = 16),
      so it is provided for reference only.
  (c) BatchNorm: in eval mode BN is a per-channel affine map, so (a) suffices. In train mode
      `MaskedBatchNorm1d` computes the batch mean/variance over real frames only (and updates the
      running statistics with them), so the amount of padding does not change anything; the batch
      composition still does, as with any BatchNorm.

Shared encoder (Chapter 5, Sec. 5.1.0.1), `language_conditioning`, with an 8-dim learned embedding:
  None     a plain encoder (no language input)
  "basic"  one encoder for all languages; language ids are accepted and ignored
  "input"  a learned language embedding (num_languages x 8) concatenated to the mel-bin axis of
           every frame (stem conv reads in_bins + 8 features: "expanding the filter sizes of the
           first convolutional layer")
  "chan"   "input" plus, between consecutive residual layers (after layers 1, 2, 3), a layer- and
           language-specific 8-dim embedding concatenated on the channel axis, broadcast over time
           (the next layer's convs and shortcut read w + 8 channels: more parameters than "seq")
  "seq"    "input" plus, at the same three places, a layer- and language-specific 8-dim embedding
           appended on the sequence axis: 8 extra frames after each utterance's last real frame
           (frame j holds embedding[j] on every channel; lengths grow by 8); no conv changes size.
  Unclear in the thesis (our reading): whether "between the four residual blocks" means the three
  junctions (ours) or also stem->layer 1; how the 8-dim vector fills the other axis (we broadcast:
  over time for "chan", over channels for "seq"); where along the sequence it goes (we append after
  each utterance's real frames, which keeps padding invariance; appending after the padded batch
  would not); "input" alone is not in Table 5.1 (there: Full, Basic, Seq. Emb., Chan. Emb.).
  With "seq" the inserted frames count as real for pooling.

Internal MHSA (Table 3.6 "Avg. Pool Int. Mh Attn."): `internal_attention=True` inserts
InternalMHSA (8 heads) between residual layers 3 and 4 ("between the second to last and last
layer ... feed that to the last convolutional layer to then get average-pooled"); we read "layer"
as residual layer, since a layer inside a residual block would break its shortcut.

Thesis text vs this module (Sec. 2.4.2.2): it says "No padding is used", yet describes the
Harwath encoder whose 1x9 convs pad by 4 (the only way a residual shortcut lines up and the output
is T/16, as in the reference code); we follow the reference code.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from vgs.nn.attention_pooling import InternalMHSA, make_pooling
from vgs.nn.pooling import lengths_to_mask

LANGUAGE_CONDITIONINGS = (None, "basic", "input", "seq", "chan")


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, C, T) whose batch statistics use only frames where mask (B, T) is True.

    Same parameters and buffers as nn.BatchNorm1d (drop-in for a state dict). With mask=None, or when
    running statistics are used (eval mode), it is exactly nn.BatchNorm1d. Running variance is updated
    with the unbiased variance over real frames, as torch does over all frames.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if mask is None or not use_batch_stats:
            return super().forward(x)
        if x.dim() != 3 or tuple(mask.shape) != (x.shape[0], x.shape[2]):
            raise ValueError(f"mask {tuple(mask.shape)} does not fit features {tuple(x.shape)}")
        keep = mask.unsqueeze(1)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        n = keep.sum()
        if int(n) < 1:
            raise ValueError("MaskedBatchNorm1d: no real frame in the batch")
        nf = n.to(x.dtype)
        mean = torch.where(keep, x, zero).sum(dim=(0, 2)) / nf
        centered = torch.where(keep, x - mean[None, :, None], zero)
        var = centered.pow(2).sum(dim=(0, 2)) / nf
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * (nf / (nf - 1)) if int(n) > 1 else var
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return x * scale[None, :, None] + shift[None, :, None]


def conv_output_lengths(lengths: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """Frames out of a 1-D conv: (L + 2 padding - kernel) // stride + 1 (dilation 1)."""
    return torch.div(lengths + 2 * padding - kernel_size, stride, rounding_mode="floor") + 1


def thesis_avg_pool_len(lengths: torch.Tensor, max_sl: int, max_sl_out: int) -> torch.Tensor:
    """Crabtree Sec. 3.1.6.1 verbatim: floor(len / round(max_sl / max_sl_out)), round half up.

    max_sl / max_sl_out are the padded input and output lengths of the batch, so the result depends
    on what an utterance is batched with (reference only; ResDAVEnet uses pool_frames="real").
    """
    ratio = max(1, math.floor(max_sl / max_sl_out + 0.5))
    return torch.div(lengths, ratio, rounding_mode="floor")


class SpeechBasicBlock(nn.Module):
    """Conv1x9(stride) - BN - ReLU - Conv1x9 - BN, + shortcut (identity or Conv1x1(stride) - BN), ReLU.

    forward(x (B, Cin, T) zero past each utterance's length, keep (B, 1, T') float 0/1, mask (B, T') bool)
    -> (B, Cout, T') zero past the new lengths.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn1 = MaskedBatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, stride=1, padding=pad, bias=False)
        self.bn2 = MaskedBatchNorm1d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut_conv = nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.shortcut_bn = MaskedBatchNorm1d(out_channels)
        else:
            self.shortcut_conv = self.shortcut_bn = None
        self.stride = stride

    def forward(self, x: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x), mask)) * keep
        h = self.bn2(self.conv2(h), mask)
        shortcut = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x), mask)
        return F.relu(h + shortcut) * keep


class ResDAVEnet(nn.Module):
    """ResDAVEnet audio encoder; see the module docstring for layout, masking and options.

    forward(x (B, T, in_bins), lengths (B,), language (B,) int64 | None) -> (B, D) pooled embedding
    frames(x, lengths, language) -> (features (B, D, T'), lengths' (B,))
    """

    # in_bins and pooling have no defaults: the feature store and the method's params say them.
    def __init__(self, widths: Sequence[int] = (128, 256, 256, 512, 1024), *, in_bins: int, pooling: str,
                 embed_dim: int | None = None,
                 blocks_per_layer: int | Sequence[int] = 2, kernel_size: int = 9, pool_frames: str = "real",
                 pooling_options: Mapping | None = None, internal_attention: bool = False,
                 internal_attention_options: Mapping | None = None,
                 language_conditioning: str | None = None, num_languages: int | None = None,
                 language_dim: int = 8, normalize: bool = False):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        n_layers = len(widths) - 1
        if n_layers < 1 or min(widths) < 1:
            raise ValueError(f"widths needs a stem width and at least one layer width, all positive: {widths}")
        blocks = (blocks_per_layer,) * n_layers if isinstance(blocks_per_layer, int) else tuple(blocks_per_layer)
        if len(blocks) != n_layers or min(blocks) < 1:
            raise ValueError(f"blocks_per_layer {blocks_per_layer} does not fit {n_layers} layers")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (symmetric padding keeps the shortcut aligned), got {kernel_size}")
        if pool_frames not in ("real", "all"):
            raise ValueError(f"pool_frames must be 'real' or 'all', got {pool_frames!r}")
        if language_conditioning not in LANGUAGE_CONDITIONINGS:
            raise ValueError(f"language_conditioning must be one of {LANGUAGE_CONDITIONINGS}, got {language_conditioning!r}")
        conditioned = language_conditioning in ("input", "seq", "chan")
        if conditioned and (num_languages is None or num_languages < 1):
            raise ValueError(f"language_conditioning={language_conditioning!r} needs num_languages >= 1")
        if internal_attention and n_layers < 2:
            raise ValueError("internal_attention needs at least two residual layers")

        self.widths = widths
        self.in_bins = in_bins
        self.kernel_size = kernel_size
        self.blocks_per_layer = blocks
        self.pool_frames = pool_frames
        self.language_conditioning = language_conditioning
        self.num_languages = num_languages
        self.language_dim = language_dim
        self.normalize = normalize
        self.pooling_name = pooling

        extra_in = language_dim if conditioned else 0
        self.input_language = nn.Embedding(num_languages, language_dim) if conditioned else None
        self.layer_language = (nn.ModuleList(nn.Embedding(num_languages, language_dim) for _ in range(n_layers - 1))
                               if language_conditioning in ("seq", "chan") else None)
        self.stem_conv = nn.Conv1d(in_bins + extra_in, widths[0], kernel_size=1, bias=False)
        self.stem_bn = MaskedBatchNorm1d(widths[0])
        self.layers = nn.ModuleList()
        for i in range(n_layers):
            c_in = widths[i] + (language_dim if language_conditioning == "chan" and i > 0 else 0)
            layer = nn.ModuleList()
            for j in range(blocks[i]):
                layer.append(SpeechBasicBlock(c_in if j == 0 else widths[i + 1], widths[i + 1], kernel_size,
                                              stride=2 if j == 0 else 1))
            self.layers.append(layer)
        self.internal = (InternalMHSA(widths[-2], **dict(internal_attention_options or {}))
                         if internal_attention else None)
        out_dim = widths[-1] if embed_dim is None else int(embed_dim)
        self.project = nn.Conv1d(widths[-1], out_dim, 1, bias=True) if out_dim != widths[-1] else None
        self.embed_dim = out_dim
        self.pool = make_pooling(pooling, out_dim, **dict(pooling_options or {}))

    # -- length / mask bookkeeping (pure functions of the input lengths) -------------------------------
    @property
    def reduction(self) -> int:
        """Input frames per output frame: 2 ** (number of stride-2 layers)."""
        return 2 ** len(self.layers)

    def _downsample(self, lengths: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lengths and 'fully real' mask after one stride-2 layer (its first conv and its shortcut)."""
        pad = self.kernel_size // 2
        new_lengths = conv_output_lengths(lengths, self.kernel_size, 2, pad)
        assert torch.equal(new_lengths, conv_output_lengths(lengths, 1, 2, 0))  # shortcut lines up
        t_out = (real.shape[1] - 1) // 2 + 1
        cells = F.pad(real, (0, 2 * t_out - real.shape[1]), value=False).view(real.shape[0], t_out, 2)
        return new_lengths, cells.all(dim=-1)

    def _insert(self, lengths: torch.Tensor, real: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Lengths and real mask after inserting k frames after each utterance's last frame ("seq")."""
        t = torch.arange(real.shape[1] + k, device=real.device)[None, :]
        new = (t >= lengths[:, None]) & (t < lengths[:, None] + k)
        return lengths + k, F.pad(real, (0, k), value=False) | new

    def _pool_mask(self, lengths: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, real.shape[1])
        if self.pool_frames == "all":
            return mask
        empty = ~real.any(dim=1, keepdim=True)  # shorter than one full output cell: keep its frames
        return torch.where(empty, mask, real & mask)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames each utterance has at the output (its own conv arithmetic; ceil(L / 16) for 4 layers)."""
        return self._plan(lengths)[0]

    def pool_mask(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T'_max) bool: the output frames average pooling reads (see pool_frames)."""
        out_lengths, real = self._plan(lengths)
        return self._pool_mask(out_lengths, real)

    def _plan(self, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(torch.int64)
        real = lengths_to_mask(lengths, int(lengths.max()))
        for i in range(len(self.layers)):
            if i > 0 and self.language_conditioning == "seq":
                lengths, real = self._insert(lengths, real, self.language_dim)
            lengths, real = self._downsample(lengths, real)
        return lengths, real

    # -- forward --------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, lengths: torch.Tensor, language: torch.Tensor | None):
        self._check(x, lengths, language)
        lengths = lengths.to(device=x.device, dtype=torch.int64)
        t = x.shape[1]
        mask = lengths_to_mask(lengths, t)
        real = mask
        keep = mask.unsqueeze(1).to(x.dtype)
        h = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)).transpose(1, 2)
        if self.input_language is not None:
            e = self.input_language(language).to(x.dtype)
            h = torch.cat([h, e[:, :, None].expand(-1, -1, t)], dim=1) * keep
        h = F.relu(self.stem_bn(self.stem_conv(h), mask)) * keep
        for i, layer in enumerate(self.layers):
            if i == len(self.layers) - 1 and self.internal is not None:
                h = self.internal(h, mask)
            if i > 0 and self.layer_language is not None:
                e = self.layer_language[i - 1](language).to(x.dtype)
                if self.language_conditioning == "chan":
                    h = torch.cat([h, e[:, :, None].expand(-1, -1, h.shape[-1])], dim=1) * keep
                else:  # "seq"
                    k = e.shape[1]
                    h = _append_within_lengths(h, lengths, e[:, None, :].expand(-1, h.shape[1], -1))
                    lengths, real = self._insert(lengths, real, k)
                    mask = lengths_to_mask(lengths, h.shape[-1])
                    keep = mask.unsqueeze(1).to(x.dtype)
            for j, block in enumerate(layer):
                if j == 0:  # the stride-2 block
                    lengths, real = self._downsample(lengths, real)
                    mask = lengths_to_mask(lengths, real.shape[1])
                    keep = mask.unsqueeze(1).to(x.dtype)
                h = block(h, keep, mask)
                assert h.shape[-1] == mask.shape[1], (h.shape, mask.shape)
        if self.project is not None:
            h = self.project(h) * keep
        return h, lengths, real

    def frames(self, x: torch.Tensor, lengths: torch.Tensor, language: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features (B, D, T'), zero past each utterance's output length, and those lengths (B,)."""
        h, out_lengths, _ = self._run(x, lengths, language)
        return h, out_lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, language: torch.Tensor | None = None) -> torch.Tensor:
        h, out_lengths, real = self._run(x, lengths, language)
        z = self.pool(h.transpose(1, 2), self._pool_mask(out_lengths, real))
        return F.normalize(z, p=2, dim=1) if self.normalize else z

    def _check(self, x: torch.Tensor, lengths: torch.Tensor, language: torch.Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.in_bins:
            raise ValueError(f"expected log-mel frames (B, T, {self.in_bins}), got {tuple(x.shape)}")
        if lengths.shape != (x.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
            raise ValueError(f"lengths {lengths.tolist()} do not fit a padded batch of shape {tuple(x.shape)}")
        if self.input_language is not None:
            if language is None or language.shape != (x.shape[0],):
                raise ValueError(f"language_conditioning={self.language_conditioning!r} needs language ids of "
                                 f"shape ({x.shape[0]},), got {None if language is None else tuple(language.shape)}")
            if int(language.min()) < 0 or int(language.max()) >= self.num_languages:
                raise ValueError(f"language ids {language.tolist()} outside [0, {self.num_languages})")


def _append_within_lengths(x: torch.Tensor, lengths: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """(B, C, T) + (B, C, K) -> (B, C, T + K): row b is x[b, :, :L_b], extra[b], then zeros."""
    b, c, t = x.shape
    k = extra.shape[-1]
    pos = torch.arange(t + k, device=x.device)[None, :]
    rel = pos - lengths[:, None]
    is_new = ((rel >= 0) & (rel < k))[:, None, :]
    is_old = (pos < lengths[:, None])[:, None, :]
    new_vals = extra.gather(2, rel.clamp(0, k - 1)[:, None, :].expand(b, c, t + k))
    old_vals = F.pad(x, (0, k))
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(is_new, new_vals, torch.where(is_old, old_vals, zero))


# -- presets ------------------------------------------------------------------------------------------
RESDAVENET_PRESETS: dict[str, dict] = {
    # Crabtree 2021 Sec. 2.4.2.2 / Harwath et al.: 1024-d output, no projection
    "paper": dict(widths=(128, 256, 256, 512, 1024), embed_dim=1024),
    # the other width schedule of the reference code (layer 1 at 128)
    "paper_128": dict(widths=(128, 128, 256, 512, 1024), embed_dim=1024),
    # same structure, 1/4 of the widths: batch 128 x ~150 frames forward+backward well under 1 s per core
    "cpu": dict(widths=(32, 64, 64, 128, 256), embed_dim=256),
}

# Table 3.1-3.6 pooling configurations, as ResDAVEnet keyword arguments
POOLING_VARIANTS: dict[str, dict] = {
    "avg": dict(pooling="avg"),
    "mhsa": dict(pooling="mhsa"),
    "mhsa_nocls": dict(pooling="mhsa_nocls"),
    "avg_internal_mhsa": dict(pooling="avg", internal_attention=True),
    "transformer": dict(pooling="transformer"),
}


def resdavenet(preset: str = "paper", **overrides) -> ResDAVEnet:
    """ResDAVEnet from a preset ("paper", "paper_128", "cpu"), any constructor argument overridden;
    `variant=` one of POOLING_VARIANTS is expanded into its arguments."""
    try:
        kwargs = dict(RESDAVENET_PRESETS[preset])
    except KeyError:
        raise ValueError(f"unknown ResDAVEnet preset {preset!r}; known: {sorted(RESDAVENET_PRESETS)}") from None
    variant = overrides.pop("variant", None)
    if variant is not None:
        if variant not in POOLING_VARIANTS:
            raise ValueError(f"unknown pooling variant {variant!r}; known: {sorted(POOLING_VARIANTS)}")
        kwargs.update(POOLING_VARIANTS[variant])
    kwargs.update(overrides)
    return ResDAVEnet(**kwargs)
