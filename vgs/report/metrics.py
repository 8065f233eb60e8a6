"""What a paper's report leaves for DVC to read: headline numbers in metrics.json, the rest in
details.json.

`dvc metrics show|diff` and `dvc exp show` print every key of every declared metrics file as a
column, so a metrics file that also holds timings, loads and sample counts buries the few numbers
a reader compares (225 columns for three papers before this convention). Every `<paper>-report`
stage therefore writes, through `write_results`:

- `results/<paper>/metrics.json` (dvc.yaml `metrics:`, `cache: false`): the headline numbers only.
  Flat keys, or one level of run names (`ig2p15e-2.purity`); keys named after the result table's
  columns without their `_ours` suffix (`purity_ours` -> `purity`); each value as the table prints
  it (`table_number`), so `dvc metrics show` and the table agree digit for digit. About a dozen
  per paper plus one or two per sweep point.
- `results/<paper>/details.json` (dvc.yaml `outs:`, `cache: false`, not a metric): everything
  else the report, the stage's summary line or a reader needs.
- figures and curve CSVs under `plots:`, each CSV with x, y, axis titles and a template
  (docs/results-with-dvc.md).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from vgs.report.tables import fmt, write_metrics
from vgs.utils.atomic import atomic_write_text

METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
# A safety net, not a target: a headline that grows past this has probably swallowed details.
MAX_HEADLINE = 40


class HeadlineError(ValueError):
    """metrics.json would not be a headline: nested too deep, not numbers, or too many keys."""


def table_number(value, digits: int = 3) -> float | int | None:
    """`value` as a table cell prints it (`tables.fmt`), as a number; None for an empty cell."""
    text = fmt(value, digits)
    if not text:
        return None
    number = float(text)
    return int(number) if isinstance(value, int) and not isinstance(value, bool) else number


def headline_cells(row: Mapping, columns: list[str], digits: int = 3, suffix: str = "_ours") -> dict:
    """{column without `suffix`: number as printed} for the table columns of one row; cells the
    table leaves empty are left out."""
    cells = {}
    for column in columns:
        number = table_number(row.get(column), digits)
        if number is not None:
            cells[column.removesuffix(suffix)] = number
    return cells


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def flatten_headline(metrics: Mapping, limit: int = MAX_HEADLINE) -> dict[str, float]:
    """The columns `dvc metrics show` prints for `metrics` ({"run.key": value}), after checking
    that it is a headline; raises HeadlineError otherwise."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key or "." in key:
            # DVC joins nested keys with dots, so a dotted key would read as a nested one.
            raise HeadlineError(f"headline key {key!r}: keys are non-empty strings without dots")
        if isinstance(value, Mapping):
            for sub, number in value.items():
                if not isinstance(sub, str) or not sub or "." in sub:
                    raise HeadlineError(f"headline key {key}.{sub!r}: keys are non-empty strings without dots")
                if not _is_number(number):
                    raise HeadlineError(f"headline {key}.{sub} = {number!r}: one level of run names, then "
                                        "numbers (put anything else in details.json)")
                flat[f"{key}.{sub}"] = number
        elif _is_number(value):
            flat[key] = value
        else:
            raise HeadlineError(f"headline {key} = {value!r}: numbers or {{run: {{name: number}}}} only "
                                "(put anything else in details.json)")
    if not flat:
        raise HeadlineError("the headline is empty")
    if len(flat) > limit:
        raise HeadlineError(f"{len(flat)} headline numbers, more than {limit}: keep the table's main "
                            "columns in metrics.json and move the rest to details.json")
    return flat


def write_results(out_dir: str | Path, headline: Mapping, details: Mapping, limit: int = MAX_HEADLINE) -> None:
    """Write `out_dir`/metrics.json (the checked headline) and `out_dir`/details.json."""
    flatten_headline(headline, limit)
    out = Path(out_dir)
    write_metrics(out / METRICS_FILE, dict(headline))
    atomic_write_text(out / DETAILS_FILE, json.dumps(details, indent=2, sort_keys=True) + "\n")


def read_details(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / DETAILS_FILE).read_text())
