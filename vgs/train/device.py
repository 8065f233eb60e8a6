"""Where a paper stage computes, and in which precision: one rule for every method and step.

`params.yaml` names it once, for every paper stage (train, export, evaluate, generate):

    train:
      device: auto        # auto (CUDA when torch sees a GPU, else the CPU) | cpu | cuda | cuda:N
      precision:          # per profile: fp32 | bf16 | fp16 | auto
        cpu: fp32         #   auto: bf16 autocast on a GPU that supports it, fp32 elsewhere
        paper: auto       #   fp16: autocast with a gradient scaler (GPUs only)

The stage driver (stages/run.py) resolves it with `compute_from_params` and installs it with
`using(...)`; the shared Trainer places every module of a training task on it, and methods move
their batches with `current().to(...)` and wrap forward passes in `current().autocast()`. Data
loading stays on the CPU; batches travel in pinned memory with `non_blocking=True`.

On the CPU with fp32 every call here is the identity: the CPU numbers do not depend on this module.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from vgs.errors import ParamError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Compute:
    device: torch.device
    precision: str = "fp32"            # fp32 | bf16 | fp16, resolved (never auto)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def to(self, obj: Any) -> Any:
        """`obj` with every tensor in it (nested in dicts, lists, tuples, dataclass-like namedtuples)
        on this device; the identity on the CPU. CPU tensors are pinned first so that the copy to
        a GPU is asynchronous (`non_blocking`)."""
        if self.device.type == "cpu":
            return obj
        if isinstance(obj, torch.Tensor):
            if obj.device == self.device:
                return obj
            if obj.device.type == "cpu" and self.is_cuda:
                obj = obj.pin_memory()
            return obj.to(self.device, non_blocking=True)
        if isinstance(obj, dict):
            return type(obj)((k, self.to(v)) for k, v in obj.items())
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):     # namedtuple (e.g. a padded caption batch)
            return type(obj)(*(self.to(v) for v in obj))
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.to(v) for v in obj)
        return obj

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes (and the loss); a no-op context in fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 needs loss scaling against gradient underflow; for fp32 and bf16 the scaler is
        disabled and `scale`/`step`/`update` pass straight through."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.is_cuda else "CPU"
        return f"{self.device} ({name}), {self.precision}"


CPU = Compute(torch.device("cpu"), "fp32")
_current: list[Compute] = [CPU]


def current() -> Compute:
    """The compute that the running stage was given (the CPU in fp32 outside a stage)."""
    return _current[-1]


@contextlib.contextmanager
def using(compute: Compute) -> Iterator[Compute]:
    _current.append(compute)
    try:
        yield compute
    finally:
        _current.pop()


def resolve_device(choice: str, key: str = "train.device") -> torch.device:
    """auto | cpu | cuda | cuda:N as a torch.device; ParamError when the GPU asked for is absent."""
    if not isinstance(choice, str):
        raise ParamError(f"{key} must be auto, cpu, cuda or cuda:N, got {choice!r} (params.yaml)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or (choice.startswith("cuda:") and choice[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ParamError(f"{key} = {choice} but torch sees no CUDA device here "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})",
                             hint="set it to auto or cpu, or install a CUDA build of torch on a GPU machine")
        index = int(choice[5:]) if ":" in choice else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ParamError(f"{key} = {choice} but torch sees {torch.cuda.device_count()} CUDA device(s)",
                             hint="use cuda:0 .. cuda:{}, or set CUDA_VISIBLE_DEVICES".format(
                                 torch.cuda.device_count() - 1))
        return torch.device("cuda", index)
    raise ParamError(f"{key} must be auto, cpu, cuda or cuda:N, got {choice!r} (params.yaml)")


def resolve_precision(choice: str, device: torch.device, key: str = "train.precision") -> str:
    if choice not in PRECISIONS:
        raise ParamError(f"{key} must be one of {', '.join(PRECISIONS)}, got {choice!r} (params.yaml)")
    if choice == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and choice != "fp32":
        # CPU autocast would change every method's numbers for little speed on small models.
        raise ParamError(f"{key} = {choice} on the CPU: the CPU runs in fp32",
                         hint="set it to fp32 or auto, or train.device to a GPU")
    if choice == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ParamError(f"{key} = bf16 but {torch.cuda.get_device_name(device)} does not support bfloat16",
                         hint="use fp16 (with its gradient scaler) or fp32")
    return choice


def compute_from_params(params) -> Compute:
    """The `train` section of params.yaml (device, precision per profile) as a Compute."""
    if not params.has("train"):
        return CPU
    section = params.section("train")
    known = {"device", "precision"}
    unknown = sorted(set(section.keys()) - known)
    if unknown:
        raise ParamError(f"train has unknown key(s) {unknown} (params.yaml)", hint=f"known keys: {sorted(known)}")
    device = resolve_device(section.raw("device", "auto"))
    precision = section.raw("precision", "fp32")
    key = "train.precision"
    if isinstance(precision, dict):
        profile = params.profile()
        key = f"train.precision.{profile}"
        precision = precision.get(profile, "fp32")
    return Compute(device, resolve_precision(precision, device, key))


def place_modules(task: Any, compute: Compute) -> list[str]:
    """Move every torch module held by `task` (as an attribute, or in a dict/list attribute) to
    `compute.device`; returns their names. Before any optimiser step: an optimiser holds the
    parameter objects themselves, which `Module.to` updates in place."""
    if compute.device.type == "cpu":
        return []
    moved = []
    for name, value in vars(task).items():
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
        for sub, module in items:
            if isinstance(module, torch.nn.Module):
                module.to(compute.device)
                moved.append(name if sub is None else f"{name}[{sub}]")
    return moved
