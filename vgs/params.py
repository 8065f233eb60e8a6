"""Typed, validated access to params.yaml.

Every read names its dotted key, so a wrong value produces an error such as
`features.fbank80.num_mel_bins must be an integer >= 1, got -3 (params.yaml)`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from vgs.errors import ParamError

_MISSING = object()
PROFILES = ("cpu", "paper")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamError(f"{path} not found", hint="run from the repository root, or pass --params")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path} must hold a mapping at the top level")
    return data


class Params:
    """A view of one section of params.yaml that remembers where it came from."""

    def __init__(self, data: dict, prefix: str = "", source: str = "params.yaml"):
        self.data = data
        self.prefix = prefix
        self.source = source

    @classmethod
    def load(cls, path: str | Path = "params.yaml") -> "Params":
        return cls(load_yaml(path), "", str(path))

    # -- navigation -------------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def _lookup(self, dotted: str):
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def has(self, dotted: str) -> bool:
        return self._lookup(dotted) is not _MISSING

    def raw(self, dotted: str, default: Any = _MISSING) -> Any:
        value = self._lookup(dotted)
        if value is _MISSING:
            if default is _MISSING:
                raise ParamError(f"{self.key(dotted)} is missing ({self.source})",
                                 hint=f"add `{self.key(dotted)}` to {self.source}")
            return default
        return value

    def section(self, dotted: str) -> "Params":
        value = self.raw(dotted)
        if not isinstance(value, dict):
            raise ParamError(f"{self.key(dotted)} must be a mapping, got {value!r} ({self.source})")
        return Params(value, self.key(dotted), self.source)

    def keys(self) -> list[str]:
        return list(self.data)

    def to_dict(self) -> dict:
        return copy.deepcopy(self.data)

    # -- typed getters ----------------------------------------------------------------------
    def _bad(self, dotted: str, what: str, value: Any) -> ParamError:
        return ParamError(f"{self.key(dotted)} must be {what}, got {value!r} ({self.source})")

    def int(self, dotted: str, default: Any = _MISSING, min: int | None = None,
            max: int | None = None) -> int:
        value = self.raw(dotted, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(dotted, "an integer", value)
        if (min is not None and value < min) or (max is not None and value > max):
            raise self._bad(dotted, _range_text("an integer", min, max), value)
        return value

    def float(self, dotted: str, default: Any = _MISSING, min: float | None = None,
              max: float | None = None) -> float:
        value = self.raw(dotted, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(dotted, "a number", value)
        if (min is not None and value < min) or (max is not None and value > max):
            raise self._bad(dotted, _range_text("a number", min, max), value)
        return float(value)

    def bool(self, dotted: str, default: Any = _MISSING) -> bool:
        value = self.raw(dotted, default)
        if not isinstance(value, bool):
            raise self._bad(dotted, "true or false", value)
        return value

    def str(self, dotted: str, default: Any = _MISSING, choices: Iterable[str] | None = None,
            allow_none: bool = False) -> str | None:
        value = self.raw(dotted, default)
        if value is None and allow_none:
            return None
        if not isinstance(value, str):
            raise self._bad(dotted, "a string", value)
        if choices is not None and value not in choices:
            raise self._bad(dotted, "one of " + ", ".join(map(str, choices)), value)
        return value

    def list(self, dotted: str, default: Any = _MISSING) -> list:
        value = self.raw(dotted, default)
        if not isinstance(value, list):
            raise self._bad(dotted, "a list", value)
        return value

    # -- profiles ---------------------------------------------------------------------------
    def profile(self) -> str:
        return self.str("profile", "cpu", choices=PROFILES)

    def profiled(self, dotted: str, profile: str | None = None) -> "Params":
        """The section `dotted` with `dotted.profiles.<profile>` merged over its base values.

        Methods keep paper-scale and CPU-scale settings side by side; the top-level `profile`
        key selects one for every method at once.
        """
        profile = profile or self.profile()
        base = self.section(dotted).to_dict()
        profiles = base.pop("profiles", {}) or {}
        if profile not in profiles:
            if profiles:
                raise ParamError(f"{self.key(dotted)}.profiles has no `{profile}` entry ({self.source})",
                                 hint="known profiles: " + ", ".join(profiles))
            return Params(base, self.key(dotted), self.source)
        return Params(_deep_merge(base, profiles[profile] or {}), self.key(dotted), self.source)


def _range_text(kind: str, lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]"
    if lo is not None:
        return f"{kind} >= {lo}"
    return f"{kind} <= {hi}"


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
