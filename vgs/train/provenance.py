"""What a persisted training state was made from, and the rule for when it may be reused.

DVC runs a stage only when one of its dependencies or params changed, or when forced (`dvc repro
-f`), so whenever a training stage runs, a *finished* state in its `persist: true` output is stale
by definition and is never reused. An *unfinished* state (the stage was killed) is resumed only if
it was made from exactly what the stage depends on now. That provenance is the DVC hash of every
dependency that dvc.yaml lists for the stage, taken through DVC itself, so the resume rule and
DVC's own idea of "changed" can never disagree. The one exception is the stage's code manifest
(data/code/<stage>.json): it is rebuilt from the code as it is now, file by file, so a run started
by hand after an edit (the manifest not yet rewritten by the `code` stage) is not resumed either,
and the reason names the edited file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vgs.errors import VgsError
from vgs.utils.code_deps import MANIFEST_DIR, stage_deps

# DVC sets this for every stage command it runs (dvc/stage/run.py), also under `dvc exp run`.
STAGE_ENV = "DVC_STAGE"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_provenance(stage: str | None = None) -> dict[str, str]:
    """{dependency: hash} for the DVC stage that is running (or `stage`, when run by hand).

    Files and directories (code and input stores) get DVC's content hash; params get a digest of
    their current values. DVC caches file hashes by inode and mtime, so this costs about half a
    second even for large input stores.
    """
    name = os.environ.get(STAGE_ENV) or stage
    if not name:
        return {}
    from dvc.exceptions import NotDvcRepoError
    try:
        from dvc.dependency.param import ParamsDependency
        from dvc.repo import Repo
        with Repo() as repo:   # the repository that holds the working directory (DVC runs stages at the root)
            (dvc_stage,) = repo.stage.collect(name)
            provenance = {}
            for dep in dvc_stage.deps:
                if str(dep.def_path).startswith(MANIFEST_DIR + "/"):
                    provenance.update(stage_deps(Path(repo.root_dir), name).manifest(Path(repo.root_dir))["files"])
                elif isinstance(dep, ParamsDependency):
                    provenance[f"params {dep.def_path}"] = _digest(dep.read_params())
                else:
                    hash_info = dep.get_hash() if dep.exists else None
                    provenance[str(dep.def_path)] = hash_info.value if hash_info and hash_info.value else "missing"
            return provenance
    except NotDvcRepoError:
        if STAGE_ENV in os.environ:
            raise VgsError(f"DVC runs stage {name!r} outside any DVC repository",
                           hint="run training with dvc repro from the project root") from None
        # Run by hand outside a DVC project (e.g. a library test): only the configuration can be checked.
        print(f"{name}: not in a DVC project, so a resumed checkpoint is checked against the configuration only")
        return {}
    except Exception as exc:  # dvc raises many types (unknown stage, unreadable dvc.yaml, ...)
        raise VgsError(f"cannot read the dependencies of DVC stage {name!r}: {exc}",
                       hint="run training through DVC from the project root: dvc repro " + name) from None


def describe_changes(old: dict[str, str] | None, new: dict[str, str]) -> str:
    """One short phrase saying what differs between two provenances, e.g.
    'changed: vgs/methods/leidal2017/model.py'."""
    old = old or {}
    groups = (("changed", [k for k in new if k in old and old[k] != new[k]]),
              ("new dependency", [k for k in new if k not in old]),
              ("no longer a dependency", [k for k in old if k not in new]))
    parts = []
    for label, keys in groups:
        if keys:
            keys = sorted(keys)
            parts.append(f"{label}: " + ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else ""))
    return "; ".join(parts) or "nothing changed"
