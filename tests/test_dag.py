"""The DAG end to end: a tiny DVC project built from the repo's own foundation stages.

The project in tmp_path gets copies of stages/, vgs/ and the fetch/prepare/features/pairs stages
of dvc.yaml, and the repo's params.yaml with smaller lists. Its corpora are tiny fixtures in the
real MNIST (IDX .gz) and FSDD (recordings/*.wav) layouts, placed where fetch would put them.
`dag.fetch` is empty: fetch verifies every file against the sums recorded for the real releases,
so it cannot accept a tiny corpus; it has its own tests over HTTP (tests/test_fetch.py).

Checks: one `dvc repro` runs every stage; a second runs nothing; after changing
features.fbank80.num_mel_bins exactly that features stage and the pairs stage reading its store
run again.
"""
import copy
import re
from pathlib import Path

import pytest
import yaml

from dag_project import FOUNDATION_STAGES, copy_sources, dvc, make_corpora, ran

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def make_project(proj: Path) -> None:
    proj.mkdir()
    copy_sources(proj)
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc["stages"] = {k: v for k, v in dvc["stages"].items() if k in FOUNDATION_STAGES}
    (proj / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dag"]["fetch"] = []
    params["dag"]["prepare"] = ["mnist", "fsdd"]
    params["corpora"]["mnist"]["val_size"] = 10
    params["corpora"]["fsdd"]["val_fraction"] = 0.34
    params["feature_sets"] = {k: params["feature_sets"][k] for k in ("mnist-image28", "fsdd-fbank80", "fsdd-logmel40")}
    pairing = copy.deepcopy(params["pairing"]["mnist-fsdd"])
    pairing["epochs"] = {"train": 2, "val": 1, "test": 1}
    params["pairing"] = {"mnist-fsdd": pairing}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_corpora(proj / "data")


def test_repro_then_one_key_change_reruns_only_its_stages(tmp_path):
    proj = tmp_path / "proj"
    make_project(proj)
    dvc(proj, "init", "--no-scm", "-q")

    first = dvc(proj, "repro")
    assert ran(first) == {"code", "prepare@mnist", "prepare@fsdd", "features@mnist-image28", "features@fsdd-fbank80",
                          "features@fsdd-logmel40", "pairs@mnist-fsdd"}, first

    again = dvc(proj, "repro")
    assert ran(again) == set(), again
    assert "up to date" in dvc(proj, "status")

    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["features"]["fbank80"]["num_mel_bins"] = 40
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(proj, "status")
    changed = set(re.findall(r"^(\S+@\S+):\s*$", status, flags=re.M))
    assert changed == {"features@fsdd-fbank80"}, status
    assert re.search(r"modified:\s+features\.fbank80\b", status), status

    after = dvc(proj, "repro")
    assert ran(after) == {"features@fsdd-fbank80", "pairs@mnist-fsdd"}, after
    from vgs.store.feature_store import FeatureStore

    assert FeatureStore(proj / "data/features/fsdd/fbank80.zarr").dim == 40
    assert FeatureStore(proj / "data/features/fsdd/logmel40.zarr").dim == 40
    assert ran(dvc(proj, "repro")) == set()
