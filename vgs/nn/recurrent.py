"""Variable-length sequence helpers: padding a batch, masks, and packed LSTM encoders/decoders.

Padding goes after the last real frame and encoders read each sequence's state at its own last
frame, so the padding added to make a batch rectangular never changes a result: an utterance
gets the same encoding whatever it is batched with (tested in tests/test_pvae2018.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def pad_batch(sequences: Sequence[np.ndarray | torch.Tensor], pad_value: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T_max, D) float32 tensor and (B,) int64 lengths from a list of (T_i, D) arrays."""
    if len(sequences) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    tensors = [torch.as_tensor(np.asarray(s, dtype=np.float32)) if not isinstance(s, torch.Tensor) else s.float()
               for s in sequences]
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.int64)
    if int(lengths.min()) < 1:
        raise ValueError("every sequence needs at least one frame")
    out = torch.full((len(tensors), int(lengths.max()), tensors[0].shape[-1]), pad_value, dtype=torch.float32)
    for i, t in enumerate(tensors):
        out[i, :len(t)] = t
    return out, lengths


def length_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, T) bool, True on real frames."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class LSTMEncoder(nn.Module):
    """One-layer (or deeper) LSTM that maps a padded batch to the hidden state at each sequence's
    last real frame.

    The LSTM runs over the padded batch and the state is read at index length-1. Padding sits
    after the last real frame and a recurrence only looks back, so the state read there is the
    one the sequence would get on its own. This is exact, and on CPU it is several times faster
    to train than pack_padded_sequence, whose backward pass is slow in PyTorch.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.output_size = hidden_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _check_lengths(x, lengths)
        out, _ = self.lstm(x)
        last = (lengths.to(out.device) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)


class LSTMFrameDecoder(nn.Module):
    """LSTM that reads the same conditioning vector at every step and emits one frame per step.

    Output (B, T_max, out_features); frames past a sequence's length are zeroed (and must be
    masked in the loss with length_mask). Real frames do not depend on the padding, for the same
    reason as in LSTMEncoder.
    """

    def __init__(self, cond_size: int, hidden_size: int, out_features: int):
        super().__init__()
        self.lstm = nn.LSTM(cond_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, out_features)

    def forward(self, cond: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t_max = int(lengths.max())
        steps = cond.unsqueeze(1).expand(-1, t_max, -1)
        h, _ = self.lstm(steps)
        return self.out(h) * length_mask(lengths, t_max).unsqueeze(-1)


def _check_lengths(x: torch.Tensor, lengths: torch.Tensor) -> None:
    if lengths.shape != (x.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
        raise ValueError(f"lengths {lengths.tolist()} do not fit a padded batch of shape {tuple(x.shape)}")
