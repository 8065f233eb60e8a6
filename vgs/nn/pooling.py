"""Masked pooling over the time axis of a padded batch: (B, T, C) features + (B, T) mask -> (B, C).

Every pooler here takes `mask` True on real frames and ignores the others completely: a padded
frame gets zero weight whatever its value (even inf or NaN), so an utterance pools to the same
vector whatever it is batched with. Poolers share one call signature, `pool(x, mask)`, so a
multi-head attention pooler can be dropped in where the single-head one is used.
"""
from __future__ import annotations

import torch
from torch import nn

from vgs.nn.recurrent import length_mask


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, max_len) bool, True on the first lengths[b] frames of row b (max_len defaults to max(lengths))."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D, got shape {tuple(lengths.shape)}")
    if max_len is not None and lengths.numel() and int(lengths.max()) > max_len:
        raise ValueError(f"lengths {lengths.tolist()} exceed max_len {max_len}")
    return length_mask(lengths, max_len)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean of x over `dim`, counting only positions where mask is True.

    mask has x's shape without the trailing feature axis (e.g. x (B, T, C), mask (B, T), dim 1);
    `dim` is an axis of mask.
    Rows with no real position are refused rather than silently divided by zero.
    """
    _check_mask(x, mask)
    dim = dim % mask.dim()  # an axis of mask; negative counts from mask's last axis, not x's
    counts = mask.sum(dim=dim).unsqueeze(-1)
    if bool((counts == 0).any()):
        raise ValueError("masked_mean: a row has no real frame")
    m = mask.unsqueeze(-1)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=dim)
    return total / counts.to(x.dtype)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax over `dim` with masked-out positions given exactly zero weight.

    scores (B, T, ...) and mask (B, T) (broadcast over trailing axes). Every row needs a real position.
    """
    m = mask.view(*mask.shape, *([1] * (scores.dim() - mask.dim())))
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("masked_softmax: a row has no real frame")
    filled = scores.masked_fill(~m, float("-inf"))
    return torch.softmax(filled, dim=dim)


class SelfAttentionPooling(nn.Module):
    """Single-head self-attention pooling of Merkx, Frank & Ernestus (Interspeech 2019), as used
    by Mortazavi (2020):

        a_t = softmax_t( W2 tanh(W1 h_t + b1) + b2 ),    out = sum_t a_t * h_t   (elementwise)

    W1: in_size -> hidden_size (128 in the paper), W2: hidden_size -> in_size, both with bias. The
    attention is vectorial: each of the in_size features gets its own weights over time (the
    softmax runs over time, separately per feature). Parameters: 2 * in_size * hidden_size +
    hidden_size + in_size. Padded frames get weight exactly 0.
    """

    def __init__(self, in_size: int, hidden_size: int = 128):
        super().__init__()
        self.hidden = nn.Linear(in_size, hidden_size)
        self.out = nn.Linear(hidden_size, in_size)
        self.in_size = in_size
        self.hidden_size = hidden_size

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) attention weights; each (b, :, c) sums to 1 over real frames, 0 on padding."""
        _check_mask(x, mask)
        x = _zero_padding(x, mask)
        return masked_softmax(self.out(torch.tanh(self.hidden(x))), mask, dim=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.weights(x, mask)
        return (a * _zero_padding(x, mask)).sum(dim=1)


class MeanPooling(nn.Module):
    """Masked average pooling as a module: pool(x (B, T, C), mask (B, T)) -> (B, C), the mean over
    real frames (masked_mean); parameter-free, same call signature as the attention poolers."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask, dim=1)


def _zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # where, not multiply: 0 * inf would be NaN
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _check_mask(x: torch.Tensor, mask: torch.Tensor) -> None:
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool, got {mask.dtype}")
    if x.dim() != mask.dim() + 1 or tuple(x.shape[:-1]) != tuple(mask.shape):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit features of shape {tuple(x.shape)}")
