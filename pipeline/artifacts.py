"""Result tables and reports as Prefect artifacts, so that the UI alone shows the numbers.

Papers are found generically: every directory results/<paper-id>/ contributes its table*.csv
files as table artifacts keyed `<paper-id>-table<N>` and its report.md as a markdown artifact
keyed `<paper-id>-report`. Prefect artifact keys may hold only lowercase letters, digits and
dashes, so keys are sanitised (`Leidal_2017/table1.csv` -> `leidal-2017-table1`). The report's
figures travel inside the markdown as data URIs (`embed_images`).
"""
from __future__ import annotations

import base64
import csv
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path

KEY_PATTERN = re.compile(r"^[a-z0-9-]+$")
MISSING_CELL = "n/a"      # as the reports print a value the paper text lost


def artifact_key(*parts: str) -> str:
    """A valid Prefect artifact key from free text: lowercase, other characters become dashes."""
    key = "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)
    key = re.sub(r"-{2,}", "-", key).strip("-")
    if not key:
        raise ValueError(f"no usable characters for an artifact key in {parts!r}")
    assert KEY_PATTERN.match(key), key
    return key


def _natural(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


@dataclass
class PaperResults:
    paper_id: str
    directory: Path
    tables: list[Path] = field(default_factory=list)
    report: Path | None = None

    def table_key(self, table: Path) -> str:
        return artifact_key(self.paper_id, table.stem)

    @property
    def report_key(self) -> str:
        return artifact_key(self.paper_id, "report")


def discover_results(root: str | Path) -> list[PaperResults]:
    """Every results/<paper-id>/ with at least one table*.csv or a report.md, sorted by id."""
    results = Path(root) / "results"
    found = []
    if not results.is_dir():
        return found
    for directory in sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")):
        tables = sorted(directory.glob("table*.csv"), key=_natural)
        report = directory / "report.md"
        if tables or report.is_file():
            found.append(PaperResults(directory.name, directory, tables, report if report.is_file() else None))
    return found


def read_table(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [{c: (r.get(c) or MISSING_CELL) for c in columns} for r in reader]
    return columns, rows


def embed_images(markdown: str, directory: Path) -> str:
    """`markdown` with each image it links from `directory` inlined as a data URI.

    The Prefect UI renders a markdown artifact in the browser, which cannot reach
    results/<paper-id>/, so a relative link such as `figure2_tsne.png` shows as a broken image;
    a data URI carries the picture itself and needs no server. Links that are not image files
    inside `directory` (URLs, missing files, paths leading out of it) are left as they are.
    """
    from urllib.parse import unquote

    from markdown_it import MarkdownIt

    base = directory.resolve()

    def data_uri(src: str) -> str | None:
        path = (base / unquote(src)).resolve()
        mime = mimetypes.guess_type(path.name)[0] or ""
        if "://" in src or not path.is_relative_to(base) or not path.is_file() or not mime.startswith("image/"):
            return None
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"

    # A parser, not a pattern, finds the images: only the lines of the paragraphs that hold them
    # are rewritten, so the same link text inside a code block stays as it is.
    lines = markdown.splitlines(keepends=True)
    for token in MarkdownIt("commonmark").parse(markdown):
        sources = {c.attrGet("src") for c in token.children or [] if c.type == "image" and c.attrGet("src")}
        if token.type != "inline" or not token.map or not sources:
            continue
        start, end = token.map
        text = "".join(lines[start:end])
        for src in sorted(sources):
            uri = data_uri(src)
            for written in (src, unquote(src)) if uri else ():
                text = re.sub(re.escape(f"]({written}") + r"(?=[\s)])", lambda _: f"]({uri}", text)
        lines[start:end] = [text] + [""] * (end - start - 1)
    return "".join(lines)


def publish_results(root: str | Path, log=print) -> list[str]:
    """Create the artifacts (inside a flow or task run, so they attach to it); return their keys."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    keys: list[str] = []
    papers = discover_results(root)
    taken: dict[str, Path] = {}
    for paper in papers:
        for table in paper.tables:
            key = paper.table_key(table)
            if key in taken:
                # Two names that sanitise alike (table1.csv, Table1.csv) must not overwrite each other.
                raise ValueError(f"{table} and {taken[key]} both map to the artifact key {key!r}; rename one")
            taken[key] = table
            columns, rows = read_table(table)
            # A table with no rows still shows its columns.
            data = rows if rows else {c: [] for c in columns}
            create_table_artifact(table=data, key=key,
                                  description=f"`results/{paper.directory.name}/{table.name}`: {len(rows)} rows; "
                                              f"{MISSING_CELL} = value lost from the paper text or not measured")
            keys.append(key)
            log(f"table artifact {key} <- {table.relative_to(Path(root))} ({len(rows)} rows)")
        if paper.report is not None:
            key = paper.report_key
            create_markdown_artifact(markdown=embed_images(paper.report.read_text(encoding="utf-8"), paper.directory),
                                     key=key, description=f"`results/{paper.directory.name}/report.md`")
            keys.append(key)
            log(f"markdown artifact {key} <- {paper.report.relative_to(Path(root))}")
    if not papers:
        log("no results/<paper-id>/ directories with table*.csv or report.md yet")
    return keys
