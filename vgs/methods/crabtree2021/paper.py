"""The thesis's numbers (Crabtree 2021, ../shared/papers/004_f518b70016f12879.txt), for the report's
"paper" columns, cell by cell.

The table texts below are the thesis's tables copied verbatim from our copy of the text (tab
separators written as " | "), and parsed here; nothing is retyped. Row labels name a view pair in
the thesis's abbreviations (E/Eng. English, H/Hin. Hindi, J/Jap. Japanese, I/Img. image) and a k;
every value is avgR@k (the mean of both retrieval directions, Sec. 3.1.3), printed in percent and
returned here as a fraction.

Cells our copy does not have (None -> "n/a" in the report):
  * Tables 3.1 and 3.2 print no "Best Epoch" row;
  * Table 3.6 gives image retrieval only ("we omit the cross-lingual results for space concerns");
  * Table 5.1 gives no parameter counts (the report counts ours; the paper column is n/a);
  * the corpus statistics ("Figure INSERT LATER", Sec. 3.1.1) were never filled in.
Inconsistencies in the thesis, kept as printed:
  * Table 3.3's hyperspheric column (lambda_unif 0.75) differs from Table 3.1's lambda_unif 0.75
    column (e.g. E&I R@10 22.55% against Eng.&Img. r10 36.95%), so they are not the same evaluation;
  * Tables 4.1 and 4.2 give different best epochs for the same models (Image Anc. 23 and 16,
    Cont. Others 16 and 23), though each column is one trained model;
  * the Table 5.1 caption says "Cross-lingual retrieval results", but the table holds both parts.
"""
from __future__ import annotations

import re

LANG = {"e": "en", "eng": "en", "h": "hi", "hin": "hi", "j": "ja", "jap": "ja", "i": "image", "img": "image"}
VIEW_ORDER = ("image", "en", "hi", "ja")
_LABEL = re.compile(r"^(eng|hin|jap|img|e|h|j|i)\.?&(eng|hin|jap|img|e|h|j|i)\.?_?(?:\.?avg)?r(\d+)$")
CHOSEN_HYPERSPHERIC = "@hyperspheric"   # Table 3.3's hyperspheric column: the lambda_unif chosen on validation

TABLE_3_1 = """
 | Unif. 1 | Unif .875 | Unif .75 | Unif. 50
Eng.&Img.r1 | 0.05% | 0.00% | 8.30% | 0.05%
Eng.&Img.r5 | 0.55% | 0.50% | 25.20% | 0.35%
Eng.&Img.r10 | 1.40% | 1.05% | 36.95% | 0.90%
Hin.&Img.r1 | 0.10% | 0.10% | 7.85% | 0.10%
Hin.&Img.r5 | 0.45% | 0.50% | 23.10% | 0.50%
Hin.&Img.r10 | 0.70% | 1.25% | 33.75% | 0.90%
Jap.&Img.r1 | 0.10% | 0.00% | 9.00% | 0.05%
Jap.&Img.r5 | 0.80% | 0.40% | 30.55% | 0.40%
Jap.&Img.r10 | 1.40% | 1.10% | 43.65% | 0.95%
"""

TABLE_3_2 = """
 | Unif. 1 | Unif .875 | Unif .75 | Unif. 50
Eng.&Hin._r1 | 0.20% | 0.25% | 5.90% | 0.05%
Eng.&Hin._r5 | 1.25% | 1.20% | 18.00% | 0.50%
Eng.&Hin._r10 | 2.00% | 3.00% | 27.05% | 1.00%
Eng.&Jap._r1 | 0.00% | 0.15% | 6.90% | 0.05%
Eng.&Jap._r5 | 0.20% | 0.95% | 21.30% | 0.30%
Eng.&Jap._r10 | 0.55% | 1.60% | 33.95% | 0.95%
Jap.&Hin._r1 | 0.20% | 0.10% | 6.40% | 0.15%
Jap.&Hin._r5 | 0.60% | 0.30% | 19.30% | 0.60%
Jap.&Hin._r10 | 0.90% | 0.55% | 28.95% | 1.35%
"""

TABLE_3_3 = """
 | Hyper. Un=.75 | Triplet | InfoNCE | MMS M=1 | MMS Sched. | MMS Adapt
Best Epoch | 16 | 36 | 26 | 19 | 24 | 29
Image Retrieval
E&I.avgR1 | 2.90% | 16.40% | 18.05% | 12.65% | 18.85% | 16.90%
H&I.avgR1 | 3.15% | 12.95% | 14.70% | 16.15% | 16.50% | 14.45%
J&I.avgR1 | 3.70% | 22.70% | 28.00% | 25.50% | 28.35% | 27.30%
E&I.avgR5 | 12.65% | 39.20% | 41.55% | 36.65% | 42.15% | 45.25%
H&I.avgR5 | 12.10% | 32.65% | 36.10% | 36.45% | 37.65% | 36.90%
J&I.avgR5 | 15.20% | 53.15% | 59.20% | 57.45% | 58.05% | 61.05%
E&I.avgR10 | 22.55% | 51.55% | 54.55% | 50.30% | 54.90% | 57.50%
H&I.avgR10 | 20.95% | 43.55% | 45.85% | 47.60% | 46.85% | 47.15%
J&I.avgR10 | 26.70% | 67.05% | 72.35% | 71.50% | 71.95% | 74.40%
Cross-Ling
H&E.avgR1 | 1.75% | 9.65% | 11.55% | 8.35% | 12.00% | 10.65%
J&E.avgR1 | 1.40% | 8.05% | 11.40% | 7.90% | 11.25% | 12.25%
J&H.avgR1 | 2.05% | 6.30% | 10.50% | 8.85% | 9.40% | 10.15%
H&E.avgR5 | 8.10% | 23.35% | 27.25% | 22.10% | 28.45% | 26.30%
J&E.avgR5 | 10.75% | 24.70% | 29.00% | 25.00% | 32.25% | 32.00%
J&H.avgR5 | 8.95% | 21.80% | 27.30% | 24.70% | 26.35% | 25.40%
H&E.avgR10 | 13.95% | 32.85% | 37.55% | 31.80% | 38.00% | 36.00%
J&E.avgR10 | 20.00% | 35.85% | 41.30% | 36.85% | 44.60% | 42.40%
J&H.avgR10 | 15.80% | 30.70% | 36.80% | 35.60% | 36.60% | 35.70%
"""

TABLE_3_4 = """
 | Lr .001 Drop .1 | Lr .0001 Drop .1 | Lr .0001 Drop .3 | Lr .0001 Drop .5
Best Epoch | 1 | 15 | 21 | 32
eng&img_r1 | 0.25% | 14.10% | 11.05% | 4.55%
eng&img_r5 | 0.70% | 34.20% | 33.80% | 14.15%
eng&img_r10 | 1.55% | 45.70% | 44.85% | 23.50%
hin&img_r1 | 0.05% | 9.70% | 9.05% | 3.65%
hin&img_r5 | 1.15% | 27.40% | 25.35% | 13.60%
hin&img_r10 | 1.75% | 37.70% | 34.65% | 21.25%
jap&img_r1 | 0.15% | 18.70% | 19.10% | 6.20%
jap&img_r5 | 1.10% | 46.85% | 45.35% | 20.85%
jap&img_r10 | 2.10% | 62.15% | 59.45% | 30.05%
"""

TABLE_3_5 = """
 | Lr .001 Drop .1 | Lr .0001 Drop .1 | Lr .0001 Drop .3 | Lr .0001 Drop .5
Best Epoch | 1 | 15 | 21 | 32
hin&eng_r1 | 0.20% | 7.60% | 6.50% | 2.20%
hin&eng_r5 | 1.65% | 20.85% | 18.80% | 9.25%
hin&eng_r10 | 2.70% | 29.20% | 27.80% | 14.80%
jap&eng_r1 | 0.15% | 6.70% | 6.25% | 2.05%
jap&eng_r5 | 0.70% | 19.80% | 19.05% | 7.95%
jap&eng_r10 | 1.05% | 29.30% | 26.90% | 12.90%
jap&hin_r1 | 0.20% | 5.75% | 5.00% | 1.85%
jap&hin_r5 | 0.80% | 17.15% | 15.65% | 7.85%
jap&hin_r10 | 1.45% | 26.50% | 22.40% | 12.60%
"""

TABLE_3_6 = """
 | Mh Attn. Pool No CLS | Avg. Pool Int. Mh Attn. | Transformer Lr .0001 Drop. .1
Best Epoch | 21 | 33 | 50
Eng.&Img.r1 | 9.55% | 1.15% | 0.30%
Eng.&Img.r5 | 27.85% | 4.30% | 1.10%
Eng.&Img.r10 | 38.50% | 7.90% | 2.25%
Hin.&Img.r1 | 7.90% | 1.10% | 0.25%
Hin.&Img.r5 | 23.75% | 3.90% | 0.90%
Hin.&Img.r10 | 32.55% | 6.50% | 2.15%
Jap.&Img.r1 | 16.55% | 3.40% | 0.35%
Jap.&Img.r5 | 43.15% | 11.15% | 2.05%
Jap.&Img.r10 | 57.50% | 18.85% | 3.35%
"""

TABLE_4_1 = """
Image Ret. | Full-Graph | Image Anc. | Avg. Anc. | Cont. Others
Best Epoch | 26 | 23 | 37 | 16
E&I.avgR1 | 18.05% | 19.55% | 0.10% | 13.05%
H&I.avgR1 | 14.70% | 16.55% | 0.00% | 12.30%
J&I.avgR1 | 28.00% | 26.30% | 0.05% | 25.20%
E&I.avgR5 | 41.55% | 44.00% | 0.45% | 31.80%
H&I.avgR5 | 36.10% | 37.85% | 0.40% | 25.90%
J&I.avgR5 | 59.20% | 58.90% | 0.35% | 55.55%
E&I.avgR10 | 54.55% | 57.65% | 0.80% | 44.55%
H&I.avgR10 | 45.85% | 47.10% | 0.60% | 34.60%
J&I.avgR10 | 72.35% | 72.70% | 0.75% | 67.95%
"""

TABLE_4_2 = """
Cross-ling | Full-Graph | Image Anc. | Avg. Anc. | Cont. Others
Best Epoch | 26 | 16 | 37 | 23
H&E.avgR1 | 11.55% | 0.95% | 0.05% | 8.45%
J&E.avgR1 | 11.40% | 1.40% | 0.15% | 8.65%
J&H.avgR1 | 10.50% | 1.15% | 0.20% | 7.35%
H&E.avgR5 | 27.25% | 4.40% | 0.35% | 21.70%
J&E.avgR5 | 29.00% | 4.55% | 0.60% | 25.15%
J&H.avgR5 | 27.30% | 4.05% | 0.45% | 19.25%
H&E.avgR10 | 37.55% | 6.85% | 0.70% | 30.75%
J&E.avgR10 | 41.30% | 6.70% | 1.80% | 35.35%
J&H.avgR10 | 36.80% | 6.25% | 1.00% | 27.80%
"""

TABLE_5_1 = """
 | Full | Shared: Basic | Seq. Emb. | Chan. Emb.
Best Epoch | 26 | 19 | 17 | 11
Image Ret.
E&I.avgR1 | 18.05% | 11.35% | 7.35% | 2.30%
H&I.avgR1 | 14.70% | 7.40% | 4.40% | 2.20%
J&I.avgR1 | 28.00% | 8.60% | 4.60% | 2.25%
E&I.avgR5 | 41.55% | 31.05% | 22.50% | 8.40%
H&I.avgR5 | 36.10% | 21.20% | 14.10% | 8.65%
J&I.avgR5 | 59.20% | 25.85% | 16.45% | 7.60%
E&I.avgR10 | 54.55% | 42.70% | 32.10% | 12.80%
H&I.avgR10 | 45.85% | 29.70% | 20.20% | 13.45%
J&I.avgR10 | 72.35% | 35.60% | 23.20% | 12.25%
Cross-Ling
H&E.avgR1 | 11.55% | 2.25% | 1.55% | 0.20%
J&E.avgR1 | 11.40% | 2.80% | 1.75% | 0.30%
J&H.avgR1 | 10.50% | 1.35% | 1.50% | 0.15%
H&E.avgR5 | 27.25% | 8.35% | 6.85% | 1.55%
J&E.avgR5 | 29.00% | 10.05% | 6.60% | 1.50%
J&H.avgR5 | 27.30% | 5.80% | 5.45% | 1.20%
H&E.avgR10 | 37.55% | 14.10% | 11.00% | 3.10%
J&E.avgR10 | 41.30% | 15.45% | 10.00% | 2.95%
J&H.avgR10 | 36.80% | 10.40% | 8.45% | 1.65%
"""
# Our column (a run name, or CHOSEN_HYPERSPHERIC) for each of the thesis's columns, in its order.
COLUMNS = {
    "table3_1": (TABLE_3_1, ("hsphere-u100", "hsphere-u0875", "hsphere-u075", "hsphere-u050")),
    "table3_2": (TABLE_3_2, ("hsphere-u100", "hsphere-u0875", "hsphere-u075", "hsphere-u050")),
    "table3_3": (TABLE_3_3, (CHOSEN_HYPERSPHERIC, "triplet", "baseline", "mms-m1", "mms-sched", "mms-adapt")),
    "table3_4": (TABLE_3_4, ("mhsa-lr3-drop1", "mhsa-lr4-drop1", "mhsa-lr4-drop3", "mhsa-lr4-drop5")),
    "table3_5": (TABLE_3_5, ("mhsa-lr3-drop1", "mhsa-lr4-drop1", "mhsa-lr4-drop3", "mhsa-lr4-drop5")),
    "table3_6": (TABLE_3_6, ("mhsa-nocls", "avg-int-mhsa", "transformer")),
    "table4_1": (TABLE_4_1, ("baseline", "image-anchor", "average-anchor", "contrast-others")),
    "table4_2": (TABLE_4_2, ("baseline", "image-anchor", "average-anchor", "contrast-others")),
    "table5_1": (TABLE_5_1, ("baseline", "shared-basic", "shared-seq", "shared-chan")),
}


def parse_label(label: str) -> tuple[str, int] | None:
    """"E&I.avgR10" -> ("image-en", 10); "Jap.&Hin._r5" -> ("hi-ja", 5); None for other rows."""
    m = _LABEL.match(label.strip().lower())
    if not m:
        return None
    a, b = sorted((LANG[m.group(1)], LANG[m.group(2)]), key=VIEW_ORDER.index)
    return f"{a}-{b}", int(m.group(3))


def _percent(cell: str) -> float:
    if not cell.endswith("%"):
        raise ValueError(f"not a percentage: {cell!r}")
    return float(cell[:-1]) / 100


def parse_table(text: str, keys: tuple[str, ...]) -> dict:
    """{"headers": thesis column names, "keys": ours, "best_epoch": {key: int | None},
    "cells": {key: {(pair, k): fraction}}} from one verbatim table text."""
    lines = [line for line in text.strip("\n").split("\n")]
    headers = [h.strip() for h in lines[0].split(" | ")[1:]]
    if len(headers) != len(keys):
        raise ValueError(f"{len(headers)} thesis columns {headers} but {len(keys)} keys {keys}")
    best = {k: None for k in keys}
    cells: dict[str, dict] = {k: {} for k in keys}
    for line in lines[1:]:
        parts = [p.strip() for p in line.split(" | ")]
        if len(parts) == 1:
            continue                        # a section heading ("Image Retrieval", "Cross-Ling")
        if len(parts) != len(keys) + 1:
            raise ValueError(f"row {line!r} has {len(parts) - 1} values for {len(keys)} columns")
        if parts[0] == "Best Epoch":
            best = {k: int(v) for k, v in zip(keys, parts[1:])}
            continue
        metric = parse_label(parts[0])
        if metric is None:
            raise ValueError(f"unknown row label {parts[0]!r}")
        for k, v in zip(keys, parts[1:]):
            cells[k][metric] = _percent(v)
    return {"headers": headers, "keys": list(keys), "best_epoch": best, "cells": cells}


PAPER = {name: parse_table(text, keys) for name, (text, keys) in COLUMNS.items()}


def paper_cell(table: str, key: str, pair: str, k: int) -> float | None:
    """The thesis's avgR@k of `pair` in column `key` of `table`; None where our copy has none."""
    t = PAPER.get(table)
    if t is None or key not in t["cells"]:
        return None
    return t["cells"][key].get((pair, k))


def paper_best_epoch(table: str, key: str) -> int | None:
    t = PAPER.get(table)
    return None if t is None else t["best_epoch"].get(key)


def paper_header(table: str, key: str) -> str | None:
    t = PAPER.get(table)
    if t is None or key not in t["keys"]:
        return None
    return t["headers"][t["keys"].index(key)]


def paper_mean(table: str, key: str, pairs: list[str], k: int = 10) -> float | None:
    """Mean of the thesis's avgR@k over `pairs` (None if any cell is missing or `pairs` is empty), looking in the
    table's image and cross-lingual companion (3.1/3.2, 3.4/3.5, 4.1/4.2)."""
    companions = {"table3_1": "table3_2", "table3_2": "table3_1", "table3_4": "table3_5", "table3_5": "table3_4",
                  "table4_1": "table4_2", "table4_2": "table4_1"}
    values = []
    for pair in pairs:
        v = paper_cell(table, key, pair, k)
        if v is None and table in companions:
            v = paper_cell(companions[table], key, pair, k)
        if v is None:
            return None
        values.append(v)
    # A group without pairs (one caption language: no cross-lingual pairs) has no mean.
    return sum(values) / len(values) if values else None
