"""Multi-head self-attention poolers and the internal MHSA layer of Crabtree (2021), Sec. 3.1.6.

Every pooler has the call signature of vgs.nn.pooling: `pool(x (B, T, D), mask (B, T) bool) ->
(B, D)`, mask True on real frames (for images, T = h * w flattened positions and an all-True mask).

  MHSAPooling(d, cls_token=True)     Sec. 3.1.6.2: a learned CLS embedding is prepended, sinusoidal
                                     positional encoding scaled by 1/sqrt(d_model) (instead of the
                                     Transformer's sqrt(d_model) input scaling) is added, dropout,
                                     one torch nn.MultiheadAttention with 8 heads; the output at the
                                     CLS position is the representation.
  MHSAPooling(d, cls_token=False)    Table 3.6 "Mh Attn. Pool No CLS": no prepended token, the
                                     output at the first position (first frame) is the representation.
  TransformerPooling(d)              Sec. 3.1.6.3: the same, with a full (post-norm) Transformer encoder
                                     block, nn.TransformerEncoderLayer, feed-forward 2048 at paper scale.
  InternalMHSA(d)                    Table 3.6 "Avg. Pool Int. Mh Attn.": an 8-head self-attention
                                     layer between two conv layers, sequence in, sequence out
                                     (B, D, T) -> (B, D, T), used by ResDAVEnet(internal_attention=True).
  make_pooling(name, d)              "avg" | "mhsa" | "mhsa_nocls" | "transformer" (+ options).

Padding never changes a result: padded frames are zeroed before anything reads them (so inf/NaN
padding cannot leak through 0 * inf), get the same positional code as they would alone (positions
count from the first frame), and are excluded as keys with `key_padding_mask`; only the CLS /
first position is read out (in InternalMHSA padded outputs are zeroed again).

Choices the thesis leaves open (documented, not guessed silently):
  * order of CLS and positional encoding: we prepend the CLS token first and then add the encoding
    to the whole sequence (CLS gets position 0, frame t gets position t + 1), as ViT/BERT do.
    Without CLS, frame t gets position t.
  * the thesis fixes the positional table's length to the largest output length in the data;
    here the table is computed for any length (max_len=None) or capped at max_len if given.
  * MHSA: attention-internal dropout 0 (the only dropout named is the one after the positional
    encoding, Sec. 3.1.6.2); no residual and no layer norm ("adding a layer norm layer and a
    residual connection ... did not resolve this issue").
  * MHSA pooling reads only the CLS/first output, which depends only on the CLS/first query, so we
    pass that single query to nn.MultiheadAttention (identical result to full self-attention and
    reading row 0; tested). TransformerPooling runs the whole sequence through the layer.
  * Transformer block: torch's defaults (post-norm, ReLU), dropout inside the block = the same
    `dropout` as after the positional encoding (Table 3.6 lists one "Drop. .1").
  * InternalMHSA: 8 heads, same positional encoding + dropout, no CLS; residual off by default
    (the thesis only says the 8-head MHSA is placed "between the second to last and last layer").
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vgs.nn.pooling import MeanPooling


def sinusoidal_encoding(length: int, d_model: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, d_model) Vaswani et al. (2017) table: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)."""
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    pos = torch.arange(length, device=device, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe.to(dtype)


class PositionalEncoding(nn.Module):
    """x + scale * PE[:T], then dropout (Crabtree Sec. 3.1.6.2: scale = 1/sqrt(d_model), not sqrt(d_model) on x)."""

    def __init__(self, d_model: int, dropout: float = 0.1, scale: float | None = None, max_len: int | None = None):
        super().__init__()
        self.d_model = d_model
        self.scale = 1.0 / math.sqrt(d_model) if scale is None else float(scale)
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("table", sinusoidal_encoding(max_len or 0, d_model), persistent=False)

    def encoding(self, length: int, device, dtype) -> torch.Tensor:
        if self.max_len is not None and length > self.max_len:
            raise ValueError(f"sequence of {length} positions exceeds the positional encoder's max_len {self.max_len}")
        if self.table.shape[0] < length:
            self.table = sinusoidal_encoding(max(length, 2 * self.table.shape[0]), self.d_model, device=device)
        return self.table[:length].to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_model)."""
        return self.dropout(x + self.scale * self.encoding(x.shape[1], x.device, x.dtype))


class _TokenPooling(nn.Module):
    """Shared front end: zero padding, optional CLS prepend, positional encoding + dropout, key mask."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, cls_token: bool, max_len: int | None,
                 pe_scale: float | None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by {num_heads} heads")
        self.d_model = d_model
        self.num_heads = num_heads
        self.cls_token = cls_token
        self.positional = PositionalEncoding(d_model, dropout, pe_scale,
                                             None if max_len is None else max_len + int(cls_token))
        # learned CLS embedding; small normal init (BERT/ViT style); absent without CLS
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if cls_token else None

    def _prepare(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check(x, mask, self.d_model)
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return self.positional(x), ~mask  # key_padding_mask: True = ignore


class MHSAPooling(_TokenPooling):
    """8-head self-attention pooling (Sec. 3.1.6.2); the output at the CLS (or first) position.

    Parameters: nn.MultiheadAttention's 4 d^2 + 4 d, plus d for the CLS token.
    """

    def __init__(self, d_model: int, num_heads: int = 8, dropout: float = 0.1, cls_token: bool = True,
                 max_len: int | None = None, attention_dropout: float = 0.0, pe_scale: float | None = None):
        super().__init__(d_model, num_heads, dropout, cls_token, max_len, pe_scale)
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=attention_dropout, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seq, key_padding_mask = self._prepare(x, mask)
        out, _ = self.attention(seq[:, :1], seq, seq, key_padding_mask=key_padding_mask, need_weights=False)
        return out[:, 0]

    def full_sequence(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """All positions' outputs of the self-attention (B, T (+1), D); forward() equals row 0 of this."""
        seq, key_padding_mask = self._prepare(x, mask)
        out, _ = self.attention(seq, seq, seq, key_padding_mask=key_padding_mask, need_weights=False)
        return out


class TransformerPooling(_TokenPooling):
    """One Transformer encoder block as pooler (Sec. 3.1.6.3): CLS, scaled positional encoding,
    dropout, nn.TransformerEncoderLayer(d, 8 heads, dim_feedforward 2048, post-norm, ReLU); the
    output at the CLS (or first) position.
    """

    def __init__(self, d_model: int, num_heads: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1,
                 cls_token: bool = True, max_len: int | None = None, pe_scale: float | None = None):
        super().__init__(d_model, num_heads, dropout, cls_token, max_len, pe_scale)
        self.block = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=dim_feedforward,
                                                dropout=dropout, batch_first=True)
        self.dim_feedforward = dim_feedforward

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seq, key_padding_mask = self._prepare(x, mask)
        return self.block(seq, src_key_padding_mask=key_padding_mask)[:, 0]


class InternalMHSA(nn.Module):
    """Sequence-to-sequence 8-head self-attention between two conv layers (Table 3.6, "Int. Mh Attn.").

    forward(x (B, D, T) channels-first conv features, mask (B, T)) -> (B, D, T), zero on padding.
    Scaled positional encoding + dropout as in Sec. 3.1.6.2, no CLS; `residual=True` adds the input back.
    """

    def __init__(self, d_model: int, num_heads: int = 8, dropout: float = 0.1, residual: bool = False,
                 attention_dropout: float = 0.0, pe_scale: float | None = None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by {num_heads} heads")
        self.d_model = d_model
        self.residual = residual
        self.positional = PositionalEncoding(d_model, dropout, pe_scale)
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=attention_dropout, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        _check(h, mask, self.d_model)
        keep = mask.unsqueeze(-1)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        h = torch.where(keep, h, zero)
        seq = self.positional(h)
        out, _ = self.attention(seq, seq, seq, key_padding_mask=~mask, need_weights=False)
        if self.residual:
            out = out + h
        return torch.where(keep, out, zero).transpose(1, 2)


POOLING_NAMES = ("avg", "mhsa", "mhsa_nocls", "transformer")


def make_pooling(name: str, d_model: int, **options) -> nn.Module:
    """A pooler by name: "avg" (masked mean, Sec. 3.1.6.1), "mhsa" (CLS, Sec. 3.1.6.2),
    "mhsa_nocls" (first position, Table 3.6), "transformer" (Sec. 3.1.6.3). `options` go to the
    pooler's constructor (num_heads, dropout, dim_feedforward, max_len, ...); "avg" takes none.
    """
    if name == "avg":
        if options:
            raise ValueError(f"average pooling takes no options, got {sorted(options)}")
        return MeanPooling()
    if name == "mhsa":
        return MHSAPooling(d_model, **options)
    if name == "mhsa_nocls":
        return MHSAPooling(d_model, cls_token=False, **options)
    if name == "transformer":
        return TransformerPooling(d_model, **options)
    raise ValueError(f"unknown pooling {name!r}; known: {list(POOLING_NAMES)}")


def _check(x: torch.Tensor, mask: torch.Tensor, d_model: int) -> None:
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool, got {mask.dtype}")
    if x.dim() != 3 or x.shape[-1] != d_model or tuple(x.shape[:2]) != tuple(mask.shape):
        raise ValueError(f"expected features (B, T, {d_model}) and mask (B, T), got {tuple(x.shape)} "
                         f"and {tuple(mask.shape)}")
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("attention pooling: a row has no real frame")
