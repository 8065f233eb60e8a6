"""The code dependencies of every DVC stage, derived from the imports of its script.

A stage's result can change when any project module that its script runs changes, so its code
deps are the import closure of `stages/<script>.py` within `vgs/` and `pipeline/`: every module
imported anywhere in a module (function-level imports included, since they may run; imports under
`if TYPE_CHECKING:` excluded, since they never do), plus each package `__init__.py` that Python
executes on the way. Non-Python files that a module reads at run time (checksum lists, C sources
compiled on first use) are declared once in pyproject.toml (`[tool.vgs.deps] resources`), and
modules that cannot change a number (error types, the CLI error wrapper) may be exempted there
(`[tool.vgs.deps] exempt`, at most MAX_EXEMPT, each with its reason).

Each stage lists one code dep, its code manifest `data/code/<stage>.json`: the closure's files and
their SHA-256, written by the first DVC stage, `code`, which depends on the source folders. Why not
the files themselves: DVC rewrites the whole dvc.lock after every stage, and with ~40 file entries
per stage (5,600 in all) that parse and dump was ~7 s of every stage's bookkeeping
(docs/benchmarks.md). The rule is the same: an edit re-runs `code`, which rewrites every manifest,
and only the manifests whose files changed change, so exactly the stages that import the edited
file run. `dvc status` names the `code` stage after an edit; `vgs deps --affected` names the stages
that will follow.

`vgs deps` checks that every stage lists its manifest and `vgs deps --write` rewrites the code lines
of every stage's `deps:` in place (data deps and their comments stay as they are);
tests/test_code_deps.py fails when the two disagree.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vgs.errors import VgsError

PACKAGES = ("vgs", "pipeline")
CODE_PREFIXES = ("stages/", "vgs/", "pipeline/")
MAX_EXEMPT = 5
CODE_STAGE = "code"               # the stage that writes the manifests; its deps are the source folders
MANIFEST_DIR = "data/code"
_SCRIPT = re.compile(r"\bpython3?\s+(stages/[\w/]+\.py)\b")
# The one driver of the papers' stages runs the module that the paper's recipe names for the step.
_DRIVER = re.compile(r"\bpython3?\s+stages/run\.py\s+([\w-]+)\s+([\w-]+)")


class CodeDepsError(VgsError):
    """dvc.yaml or pyproject.toml cannot be read as the code-deps rule needs."""


@dataclass(frozen=True)
class DepsConfig:
    exempt: dict[str, str] = field(default_factory=dict)        # path -> why it cannot change a number
    resources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # module path -> files it reads

    @classmethod
    def load(cls, root: Path) -> "DepsConfig":
        path = root / "pyproject.toml"
        section = tomllib.loads(path.read_text()).get("tool", {}).get("vgs", {}).get("deps", {})
        exempt = dict(section.get("exempt", {}))
        if len(exempt) > MAX_EXEMPT:
            raise CodeDepsError(f"{path}: [tool.vgs.deps] exempt lists {len(exempt)} modules, at most {MAX_EXEMPT}",
                                hint="exempt only modules that cannot change a number (error types, the CLI wrapper)")
        for module, why in exempt.items():
            if not isinstance(why, str) or not why.strip():
                raise CodeDepsError(f"{path}: [tool.vgs.deps] exempt entry {module!r} has no reason",
                                    hint=f'write it as "{module}" = "why it cannot change a number"')
            if not (root / module).is_file():
                raise CodeDepsError(f"{path}: [tool.vgs.deps] exempt entry {module!r} is not a file",
                                    hint="remove it, or give the path from the repository root")
        resources = {}
        for module, files in section.get("resources", {}).items():
            for f in files:
                if not (root / f).exists():
                    raise CodeDepsError(f"{path}: [tool.vgs.deps] resources of {module!r} name {f!r}, "
                                        "which does not exist", hint="give the path from the repository root")
            resources[module] = tuple(files)
        return cls(exempt=exempt, resources=resources)


def _module_file(root: Path, name: str) -> Path | None:
    """The file that `import name` runs, for project modules only."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _package_of(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1])
    return ".".join(parts[:-1])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(root: Path, path: Path) -> set[str]:
    """Every module name an import statement of `path` may load (absolute, relative resolved)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise CodeDepsError(f"{path}: cannot parse it ({exc.msg}, line {exc.lineno})",
                            hint="fix the syntax error; the code deps are read from the imports") from None
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(root, path).split(".")
                base_parts = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from pkg import name` loads pkg.name too when it is a submodule.
            names.update(f"{base}.{alias.name}" for alias in node.names)
        visit(node)

    visit(tree)
    return names


def import_closure(root: Path, script: Path) -> set[Path]:
    """The script and every project file it can run through imports, package __init__s included."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(root, path):
            parts = name.split(".")
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
            for i in range(1, len(parts) + 1):
                target = _module_file(root, ".".join(parts[:i]))
                if target is not None and target not in seen:
                    todo.append(target)
    return seen


def expected_code_deps(root: Path, script: str, config: DepsConfig, extra_roots: tuple[str, ...] = ()) -> list[str]:
    files = set()
    for start in (script, *extra_roots):
        files |= import_closure(root, root / start)
    paths = {p.relative_to(root).as_posix() for p in files}
    paths -= set(config.exempt)
    for module, extra in config.resources.items():
        if module in paths:
            paths.update(extra)
    return sorted(paths, key=lambda p: (not p.startswith("stages/"), p))


def _cmd_text(cmd) -> str:
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd or "")


def _stage_script(cmd) -> str | None:
    m = _SCRIPT.search(_cmd_text(cmd))
    return m.group(1) if m else None


def _driver_roots(root: Path, stage: str, cmd) -> tuple[str, ...]:
    """For `python stages/run.py <paper> <step> ...`: the paper's recipe and the step's module."""
    m = _DRIVER.search(_cmd_text(cmd))
    if not m:
        return ()
    from vgs.recipe import recipe_steps
    paper, step = m.groups()
    recipe = root / "vgs" / "methods" / paper / "recipe.py"
    if not recipe.is_file():
        raise CodeDepsError(f"dvc.yaml stage {stage!r} runs paper {paper!r}, which has no {recipe.relative_to(root)}",
                            hint="fix the stage's cmd, or add the paper's recipe (docs/adding-a-paper.md)")
    steps = recipe_steps(recipe)
    if step not in steps:
        raise CodeDepsError(f"dvc.yaml stage {stage!r} runs step {step!r}, which {recipe.relative_to(root)} lacks",
                            hint="its steps: " + ", ".join(steps))
    module = _module_file(root, steps[step])
    if module is None:
        raise CodeDepsError(f"{recipe.relative_to(root)}: step {step!r} names {steps[step]!r}, which is no module",
                            hint="name a module of the vgs package, e.g. vgs.methods.<paper>.train")
    return (recipe.relative_to(root).as_posix(), module.relative_to(root).as_posix())


def manifest_path(stage: str) -> str:
    """The code manifest of a stage definition (`crabtree2021-train`, or one item of it)."""
    return f"{MANIFEST_DIR}/{stage.split('@')[0]}.json"


def _is_code(dep) -> bool:
    return isinstance(dep, str) and (dep.startswith(CODE_PREFIXES) or dep.startswith(MANIFEST_DIR + "/"))


@dataclass(frozen=True)
class StageDeps:
    stage: str
    script: str
    declared: tuple[str, ...]   # the code deps dvc.yaml lists
    closure: tuple[str, ...]    # the files the script can run, from its imports

    @property
    def expected(self) -> tuple[str, ...]:
        return (manifest_path(self.stage),)

    def manifest(self, root: Path) -> dict:
        return {"stage": self.stage, "files": {path: file_sha256(root / path) for path in self.closure}}

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.expected) - set(self.declared))

    @property
    def extra(self) -> list[str]:
        return sorted(set(self.declared) - set(self.expected))


def read_stages(root: Path, config: DepsConfig | None = None, only: str | None = None) -> list[StageDeps]:
    """Declared and derived code deps of every stage definition in dvc.yaml that runs a script (or
    of the one named `only`)."""
    config = config or DepsConfig.load(root)
    path = root / "dvc.yaml"
    try:
        stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    except yaml.YAMLError as exc:
        raise CodeDepsError(f"{path} is not valid YAML: {exc}", hint="fix dvc.yaml") from None
    if stages and CODE_STAGE not in stages:
        raise CodeDepsError(f"{path} has no stage {CODE_STAGE!r}, which writes the code manifests under {MANIFEST_DIR}",
                            hint="restore it from git: every stage depends on its manifest")
    out = []
    for name, stage in stages.items():
        if name == CODE_STAGE or (only is not None and name != only):
            continue
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        script = _stage_script(body.get("cmd"))
        if script is None:
            continue
        if not (root / script).is_file():
            raise CodeDepsError(f"dvc.yaml stage {name!r} runs {script}, which does not exist",
                                hint="fix the stage's cmd")
        declared = tuple(d for d in body.get("deps", []) if _is_code(d))
        roots = _driver_roots(root, name, body.get("cmd"))
        out.append(StageDeps(name, script, declared, tuple(expected_code_deps(root, script, config, roots))))
    return out


def disagreements(stages: list[StageDeps]) -> list[str]:
    lines = []
    for s in stages:
        if s.missing:
            lines.append(f"{s.stage}: runs but does not list " + ", ".join(s.missing))
        if s.extra:
            lines.append(f"{s.stage}: lists but never imports " + ", ".join(s.extra))
    return lines


_STAGE_KEY = re.compile(r"^  ([A-Za-z0-9_.@-]+):\s*(#.*)?$")
_DEPS_KEY = re.compile(r"^(\s+)deps:\s*(#.*)?$")
_ITEM = re.compile(r"^(\s+)- (.*?)\s*(#.*)?$")


def rewrite_dvc_yaml(text: str, expected: dict[str, list[str]]) -> str:
    """dvc.yaml with the code lines of each stage's deps replaced by `expected[stage]`.

    Data deps keep their order and their comments; comments that stood above code deps go, since
    the code list is generated. Everything outside the deps lists is left byte for byte."""
    lines = _with_deps_keys(text.splitlines(keepends=True), set(expected))
    out: list[str] = []
    in_stages, stage, i = False, None, 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^[^\s#]", line):
            in_stages = line.startswith("stages:")
            stage = None
        elif in_stages and (m := _STAGE_KEY.match(line)):
            stage = m.group(1)
        deps = _DEPS_KEY.match(line) if in_stages and stage in expected else None
        out.append(line)
        i += 1
        if not deps:
            continue
        indent = len(deps.group(1))
        block: list[tuple[list[str], str, str]] = []   # (comment lines above, item line, value)
        comments: list[str] = []
        item_indent = " " * (indent + 2)
        while i < len(lines):
            cur = lines[i]
            stripped = cur.strip()
            depth = len(cur) - len(cur.lstrip())
            if stripped.startswith("#") and depth > indent:
                comments.append(cur)
            elif (m := _ITEM.match(cur)) and len(m.group(1)) > indent:
                item_indent = m.group(1)
                block.append((comments, cur, m.group(2)))
                comments = []
            else:
                break
            i += 1
        generated = [f"{item_indent}- {dep}\n" for dep in expected[stage]]
        kept: list[str] = []
        at = None                     # where the code deps stood (first code item), else first
        for above, item, value in block:
            if _is_code(value):
                at = len(kept) if at is None else at
                continue
            kept.extend(above)
            kept.append(item)
        at = 0 if at is None else at
        out.extend(kept[:at] + generated + kept[at:])
        out.extend(comments)
    return "".join(out)


def _with_deps_keys(lines: list[str], stages: set[str]) -> list[str]:
    """Give every stage in `stages` a `deps:` key (right after its cmd) if it has none."""
    out: list[str] = []
    in_stages, stage, has_deps, cmd_at = False, None, False, None

    def close() -> None:
        if stage in stages and not has_deps and cmd_at is not None:
            indent = len(out[cmd_at]) - len(out[cmd_at].lstrip())
            out.insert(cmd_at + 1, " " * indent + "deps:\n")

    for line in lines:
        if re.match(r"^[^\s#]", line) or (in_stages and _STAGE_KEY.match(line)):
            close()
            in_stages = line.startswith("stages:") or (in_stages and bool(_STAGE_KEY.match(line)))
            m = _STAGE_KEY.match(line) if in_stages else None
            stage, has_deps, cmd_at = (m.group(1) if m else None), False, None
        elif stage is not None:
            if _DEPS_KEY.match(line):
                has_deps = True
            elif re.match(r"^\s+cmd:", line) and cmd_at is None:
                cmd_at = len(out)
        out.append(line)
    close()
    return out


def file_sha256(path: Path) -> str:
    """SHA-256 of a file; of a folder (a resource such as vgs/corpora/checksums), of its files' names
    and hashes."""
    if path.is_dir():
        listing = "".join(f"{f.relative_to(path).as_posix()} {file_sha256(f)}\n"
                          for f in sorted(path.rglob("*")) if f.is_file() and "__pycache__" not in f.parts)
        return hashlib.sha256(listing.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_deps(root: Path, stage: str) -> StageDeps:
    """The code deps of one stage (a definition's name, or one `name@item` of it)."""
    name = stage.split("@")[0]
    for found in read_stages(root, only=name):
        return found
    raise CodeDepsError(f"dvc.yaml has no stage {name!r} that runs a script", hint="list them with `dvc stage list`")


def write_manifests(root: Path) -> list[StageDeps]:
    """Write data/code/<stage>.json for every stage definition, the folder replaced at once."""
    from vgs.utils.atomic import atomic_path
    stages = read_stages(root)
    with atomic_path(root / MANIFEST_DIR) as tmp:
        tmp.mkdir()
        for s in stages:
            (tmp / Path(manifest_path(s.stage)).name).write_text(json.dumps(s.manifest(root), indent=1) + "\n")
    return stages


def affected_stages(root: Path) -> list[str]:
    """Stage definitions whose manifest on disk differs from their code now (what `code` will change)."""
    changed = []
    for s in read_stages(root):
        path = root / manifest_path(s.stage)
        try:
            written = json.loads(path.read_text())
        except (OSError, ValueError):
            written = None
        if written != s.manifest(root):
            changed.append(s.stage)
    return changed


def write_dvc_yaml(root: Path) -> list[StageDeps]:
    stages = read_stages(root)
    path = root / "dvc.yaml"
    text = rewrite_dvc_yaml(path.read_text(), {s.stage: list(s.expected) for s in stages})
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return stages
