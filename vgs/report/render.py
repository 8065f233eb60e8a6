"""Every paper's results folder rendered one way from what its recipe's report step returns.

A paper's report.py computes what is specific to it (its tables' rows, its claims, its figures)
and returns a `PaperReport`; `render` writes, atomically and in one place for all five papers:

- one CSV per `Table` (paper value beside ours), named by the table;
- metrics.json: the headline numbers (vgs/report/metrics.py), plus one number per claim
  (`claims.<id>`: 1 holds, 0 anything else) so `dvc metrics diff` shows a verdict that flips;
- details.json: the report's details and every claim in full (name, paper, ours, rule, verdict,
  evidence);
- report.md: title, what data was used, the claims table, then the sections in order, each a
  list of blocks (text, a Table, a Figure, or the claims table again).

Figures are drawn by the paper's code (vgs/report/figures.py) before rendering; the renderer
only places them. A claim's verdict is one of the four words of vgs/report/verdicts.py.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Union

from vgs.report.metrics import MAX_HEADLINE, write_results
from vgs.report.tables import markdown_table, write_csv
from vgs.report.verdicts import FAILS, HOLDS, NOISE, UNTESTED
from vgs.utils.atomic import atomic_write_text

VERDICTS = (HOLDS, FAILS, NOISE, UNTESTED)


@dataclass(frozen=True)
class Claim:
    """One claim or target of a paper, judged on our runs."""
    name: str                  # what the paper claims, in words ("1. Recall is far above chance")
    paper: str                 # the paper's value or statement ("n/a" where the text lost it)
    ours: str                  # our numbers, as the reader should see them
    rule: str                  # the rule that turns ours into the verdict
    verdict: str               # holds | does not hold | within noise | untested
    evidence: str = ""         # the test and its numbers (p-value, interval), or why untested

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.name!r}: verdict {self.verdict!r} is not one of {VERDICTS}")

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS


def verdict_of(passed: bool) -> str:
    """The verdict of a target that is a plain threshold (met or not): holds / does not hold."""
    return HOLDS if passed else FAILS


@dataclass(frozen=True)
class Table:
    """A result table: written to `<name>.csv` and shown in report.md."""
    name: str                  # file stem: table1 -> table1.csv
    rows: list[dict]
    columns: list[str]
    digits: int = 3
    csv: bool = True           # False: shown in report.md only (a diagnostic view of other files)
    shown: bool = True         # False: the CSV only (curve data that a DVC plot or a figure shows)


@dataclass(frozen=True)
class Figure:
    file: str                  # a file in the results folder, drawn by the paper's code
    caption: str = ""


class ClaimsTable:
    """A block that places the claims table (report.md shows it after the data line as well)."""


Block = Union[str, Table, Figure, ClaimsTable]


@dataclass
class Section:
    heading: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class PaperReport:
    paper: str                 # the folder id: results/<paper>/
    title: str                 # report.md's first heading
    data: str                  # the data actually used ("FSDD (6 speakers)"), never the paper's by default
    intro: str                 # one paragraph under the title: what is reproduced and from which stages
    claims: list[Claim]
    headline: dict             # metrics.json without the claims (vgs/report/metrics.py rules)
    details: dict              # details.json without the claims
    sections: list[Section] = field(default_factory=list)
    claims_heading: str = "The paper's claims beside ours"
    headline_limit: int = MAX_HEADLINE   # a sweep of many runs may need more (vgs/report/metrics.py)

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]


def claim_key(index: int, claim: Claim) -> str:
    """claims.<n>_<first words>: stable across runs, readable in `dvc metrics show`."""
    words = re.sub(r"[^a-z0-9]+", "_", re.sub(r"^\d+\.\s*", "", claim.name.lower())).strip("_")
    return f"{index + 1}_{'_'.join(words.split('_')[:4])}"


def claims_markdown(claims: list[Claim]) -> str:
    rows = [{"claim": c.name, "paper": c.paper, "ours": c.ours, "rule": c.rule, "verdict": c.verdict,
             "evidence": c.evidence} for c in claims]
    columns = ["claim", "paper", "ours", "rule", "verdict"] + (["evidence"] if any(c.evidence for c in claims) else [])
    return markdown_table(rows, columns)


def _block_markdown(block: Block, claims: list[Claim]) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, Table):
        return markdown_table(block.rows, block.columns, block.digits) if block.shown else ""
    if isinstance(block, Figure):
        return f"![{block.caption or Path(block.file).stem}]({block.file})"
    if isinstance(block, ClaimsTable):
        return claims_markdown(claims)
    raise TypeError(f"a report block is text, a Table, a Figure or ClaimsTable, got {type(block).__name__}")


def markdown(report: PaperReport) -> str:
    held = sum(c.holds for c in report.claims)
    lines = [f"# {report.title}", "", report.intro, "", f"Data: **{report.data}**.", ""]
    if report.claims:
        lines += [f"## {report.claims_heading}", "",
                  f"{held} of {len(report.claims)} hold on our runs.", "", claims_markdown(report.claims), ""]
    for section in report.sections:
        lines += [f"## {section.heading}", ""]
        for block in section.blocks:
            text = _block_markdown(block, report.claims)
            if text:
                lines += [text, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render(report: PaperReport, out_dir: str | Path) -> list[str]:
    """Write the paper's results folder; returns the names of the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [t.name for t in report.tables() if t.csv]
    if len(names) != len(set(names)):
        raise ValueError(f"{report.paper}: two tables share a file name: {sorted(names)}")
    written = []
    for table in report.tables():
        if table.csv:
            write_csv(out / f"{table.name}.csv", table.rows, table.columns, table.digits)
            written.append(f"{table.name}.csv")
    claims = {claim_key(i, c): int(c.holds) for i, c in enumerate(report.claims)}
    headline = {**report.headline, **({"claims": claims} if claims else {})}
    details = {**report.details, "data": report.data, "claims": [asdict(c) for c in report.claims]}
    write_results(out, headline, details, report.headline_limit)
    atomic_write_text(out / "report.md", markdown(report))
    return written + ["metrics.json", "details.json", "report.md"]


def summary_lines(report: PaperReport, out_dir: str | Path) -> list[str]:
    """What the report stage prints: the folder and each claim's verdict."""
    return [f"{out_dir}/: report.md, metrics.json, details.json, "
            + ", ".join(f"{t.name}.csv" for t in report.tables() if t.csv)] + \
           [f"  {c.name}: {c.verdict}" for c in report.claims]
