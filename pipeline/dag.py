"""The DVC stage graph, read from DVC itself so that new stages in dvc.yaml appear without edits here.

DVC's own index (`dvc.repo.Repo(root).index.graph`, the graph behind `dvc dag`) gives every
stage, with foreach/matrix stages already expanded to names such as `features@fsdd-fbank80`.
Its edges point from a stage to the stages whose outputs it reads.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from vgs.errors import VgsError


class PipelineError(VgsError):
    """The DVC pipeline cannot be read, or a requested stage is not in it."""


@dataclass(frozen=True)
class Stage:
    name: str                     # DVC's address: `fetch@mnist`, or `sub/dvc.yaml:train`
    cmd: str | None               # None for data-source stages (.dvc files)
    upstream: tuple[str, ...]     # stages whose outputs this one reads


@dataclass
class StageGraph:
    """Stages in a topological order (upstream first, dvc.yaml order among equals)."""

    stages: dict[str, Stage] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.stages)

    def __contains__(self, name: str) -> bool:
        return name in self.stages

    @property
    def order(self) -> list[str]:
        return list(self.stages)

    def upstream(self, name: str) -> tuple[str, ...]:
        return self.stages[name].upstream

    def downstream(self, name: str) -> list[str]:
        return [s.name for s in self.stages.values() if name in s.upstream]

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.upstream(name))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.upstream(n))
        return seen

    def resolve(self, target: str) -> list[str]:
        """Stage names for one target: an exact name, a foreach group (`features`), or a glob."""
        if target in self.stages:
            return [target]
        if any(ch in target for ch in "*?["):
            found = [n for n in self.stages if fnmatch.fnmatchcase(n, target)]
        else:
            found = [n for n in self.stages if n.startswith(target + "@")]
        if not found:
            close = difflib.get_close_matches(target, list(self.stages), n=3, cutoff=0.5)
            hint = ("did you mean " + ", ".join(close) + "?") if close else \
                "list the stages with `dvc dag` or `dvc stage list`"
            raise PipelineError(f"no DVC stage matches {target!r}", hint=hint)
        return found

    def select(self, targets: list[str] | None) -> "StageGraph":
        """The targets and every stage upstream of them, as `dvc repro <targets>` would run."""
        if not targets:
            return self
        keep: set[str] = set()
        for target in targets:
            for name in self.resolve(target):
                keep.add(name)
                keep |= self.ancestors(name)
        return StageGraph({n: s for n, s in self.stages.items() if n in keep})


def _address(stage, root: Path) -> str:
    """The stage's name as `dvc repro` takes it from the project root.

    DVC's own `stage.addressing` is relative to the process's working directory, which for a
    flow run started by a worker is somewhere else.
    """
    import os

    path = os.path.relpath(stage.path, root)
    name = getattr(stage, "name", None)
    if name is None:                       # a .dvc file: its path is its address
        return path
    return name if path == "dvc.yaml" else f"{path}:{name}"


def load_stage_graph(root: str | Path = ".", targets: list[str] | None = None) -> StageGraph:
    """Read dvc.yaml (and any other pipeline files DVC finds) under `root` through DVC's index."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(root).resolve()
    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise PipelineError(f"{root} is not a DVC repository: {exc}",
                            hint="run from the project root, or pass --repo") from None
    try:
        graph = repo.index.graph
    except DvcException as exc:
        raise PipelineError(f"cannot read the DVC pipeline in {root}: {exc}",
                            hint="`dvc dag` shows the same error; fix dvc.yaml/params.yaml") from None
    finally:
        repo.close()

    # networkx's lexicographical sort with the index position as key keeps dvc.yaml order
    # wherever the dependencies leave a choice, so runs are reproducible and readable.
    name_of = {stage: _address(stage, root) for stage in graph.nodes}
    position = {stage: i for i, stage in enumerate(graph.nodes)}
    upstream_first = graph.reverse(copy=True)
    ordered = nx.lexicographical_topological_sort(upstream_first, key=lambda s: position[s])
    stages: dict[str, Stage] = {}
    for stage in ordered:
        cmd = stage.cmd
        if isinstance(cmd, list):
            cmd = " && ".join(cmd)
        ups = tuple(sorted((name_of[dep] for dep in graph.successors(stage)),
                           key=lambda name: list(stages).index(name)))
        stages[name_of[stage]] = Stage(name_of[stage], cmd or None, ups)
    return StageGraph(stages).select(targets)

