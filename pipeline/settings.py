"""The `orchestration:` section of params.yaml: how the Prefect flow runs the DVC stages.

No DVC stage lists these keys, so changing them never makes a stage stale. A project without
the section (the tiny pipelines in the tests, say) gets the defaults below.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from vgs.params import Params, load_yaml

SECTION = "orchestration"


@dataclass(frozen=True)
class RetryRule:
    patterns: tuple[str, ...]     # fnmatch patterns over stage names, e.g. fetch@*
    retries: int
    delay_seconds: float
    backoff: float                # each further wait is this many times longer

    def delays(self) -> list[float]:
        return [round(self.delay_seconds * self.backoff ** i, 3) for i in range(self.retries)]


@dataclass(frozen=True)
class Orchestration:
    max_parallel: int = 2
    retry_rules: tuple[RetryRule, ...] = field(default_factory=tuple)
    # How long a stage waits for paths another DVC process is writing before it fails.
    busy_wait_seconds: float = 600.0

    def retry_for(self, stage: str) -> RetryRule | None:
        """The first rule whose pattern matches `stage`; None: the stage is not retryable."""
        for rule in self.retry_rules:
            if any(fnmatch.fnmatchcase(stage, p) for p in rule.patterns):
                return rule
        return None


def load_orchestration(root: str | Path = ".", params_file: str = "params.yaml") -> Orchestration:
    path = Path(root) / params_file
    if not path.exists():
        return Orchestration()
    params = Params(load_yaml(path), "", str(path))
    if not params.has(SECTION):
        return Orchestration()
    sec = params.section(SECTION)
    rules = []
    for i, item in enumerate(sec.list("retry", [])):
        rule = Params(item, f"{SECTION}.retry[{i}]", str(path)) if isinstance(item, dict) else None
        if rule is None:
            raise sec._bad(f"retry[{i}]", "a mapping with stages, retries, delay_seconds, backoff", item)
        patterns = rule.list("stages")
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise rule._bad("stages", "a non-empty list of stage-name patterns", patterns)
        rules.append(RetryRule(tuple(patterns), rule.int("retries", min=0),
                               rule.float("delay_seconds", 10.0, min=0),
                               rule.float("backoff", 2.0, min=1)))
    return Orchestration(max_parallel=sec.int("max_parallel", 2, min=1),
                         retry_rules=tuple(rules),
                         busy_wait_seconds=sec.float("busy_wait_seconds", 600.0, min=0))
