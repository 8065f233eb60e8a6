"""The one report renderer (vgs/report/render.py): files, verdict vocabulary, claims in metrics."""
import json

import pytest

from vgs.report.render import (Claim, ClaimsTable, Figure, PaperReport, Section, Table, claim_key, render,
                               verdict_of)


def _report(claims):
    table = Table("table1", [{"run": "a", "paper": 0.9, "ours": 0.8123}], ["run", "paper", "ours"])
    return PaperReport(
        paper="toy", title="Toy 2026", data="FSDD (6 speakers)", intro="Reproduces Table 1.", claims=claims,
        headline={"a": {"ours": 0.812}}, details={"runs": 1},
        sections=[Section("Table 1", [table, "Purity of k-means.", Figure("fig.png", "Figure 1")]),
                  Section("Claims again", [ClaimsTable()])])


def test_render_writes_tables_metrics_details_and_markdown(tmp_path):
    claims = [Claim("1. Purity is high", "0.9", "0.812", "ours >= 0.8", verdict_of(True)),
              Claim("2. SVM is at chance", "0.5", "0.61", "ours <= 0.55", verdict_of(False), "one seed")]
    written = render(_report(claims), tmp_path)
    assert written == ["table1.csv", "metrics.json", "details.json", "report.md"]
    assert (tmp_path / "table1.csv").read_text() == "run,paper,ours\na,0.900,0.812\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"a": {"ours": 0.812}, "claims": {"1_purity_is_high": 1, "2_svm_is_at_chance": 0}}
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["data"] == "FSDD (6 speakers)" and details["claims"][1]["evidence"] == "one seed"
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# Toy 2026\n") and "1 of 2 hold on our runs." in text
    assert "| 2. SVM is at chance | 0.5 | 0.61 | ours <= 0.55 | does not hold | one seed |" in text
    assert "![Figure 1](fig.png)" in text and text.count("| 1. Purity is high |") == 2


def test_an_unknown_verdict_word_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Claim("x", "n/a", "1", "rule", "met")


def test_two_tables_with_one_file_name_are_refused(tmp_path):
    report = _report([])
    report.sections.append(Section("dup", [Table("table1", [], ["run"])]))
    with pytest.raises(ValueError, match="share a file name"):
        render(report, tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_claim_keys_are_stable_and_dot_free():
    assert claim_key(2, Claim("3. The G3 pair beats G2 and G4", "", "", "", "holds")) == "3_the_g3_pair_beats"
