"""A trained SMART network, loaded on the stage's device, and what it produces from test items:
conversions to the other modality (E_source -> T_source->target -> D_target) and reconstructions
(E -> D). SMART writes no embeddings store: the evaluation step scores these outputs directly and
keeps a few of them for the report's figure (evaluate.py)."""
from __future__ import annotations

from pathlib import Path

import torch

from vgs.methods.smart import MODALITIES
from vgs.methods.smart.data import SmartData
from vgs.methods.smart.model import SmartNet
from vgs.methods.smart.train import build_net
from vgs.train.device import current
from vgs.train.trainer import load_checkpoint

BATCH = 500     # items per forward pass; outputs do not depend on it


def load_trained(path: str | Path, data: SmartData | None = None) -> tuple[SmartNet, dict]:
    """The network in `path` on the current device, in eval mode, and its checkpoint. With `data`:
    a ParamError unless the network was built for the input sizes of `data`'s stores."""
    ck = load_checkpoint(path)
    if data is not None:
        for m in MODALITIES:
            data[m].require_input_hw(ck["input_hw"][m], f"{path} ({m} autoencoder)")
    net = build_net(ck["config"]["model"], ck["input_hw"])
    net.load_state_dict(ck["net"])
    net.to(current().device)
    net.eval()
    return net, ck


@torch.no_grad()
def convert(net: SmartNet, x: torch.Tensor, source: str, batch: int = BATCH) -> torch.Tensor:
    """x (source modality, on the CPU) -> the other modality, on the CPU in fp32."""
    compute = current()
    net.eval()
    with compute.autocast():
        return torch.cat([net.convert(compute.to(x[i:i + batch]), source).float().cpu()
                          for i in range(0, len(x), batch)])


@torch.no_grad()
def reconstruct(net: SmartNet, x: torch.Tensor, modality: str, batch: int = BATCH) -> torch.Tensor:
    """x -> E -> D of its own modality, on the CPU in fp32."""
    compute = current()
    net.eval()
    ae = net.autoencoders[modality]
    with compute.autocast():
        return torch.cat([ae(compute.to(x[i:i + batch]))[1].float().cpu() for i in range(0, len(x), batch)])
