"""The GPU rule for stages run side by side (vgs/utils/gpus.py)."""
import threading

import pytest

from vgs.errors import VgsError
from vgs.utils.gpus import GpuPool, visible_gpus


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_without_gpus_a_stage_environment_is_left_alone():
    with GpuPool([]).claim() as env:
        assert env == {}


def test_each_stage_gets_the_least_busy_gpu_and_gives_it_back():
    pool = GpuPool(["0", "1"])
    with pool.claim() as a, pool.claim() as b:
        assert {a["CUDA_VISIBLE_DEVICES"], b["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
        with pool.claim() as c:              # more stages than GPUs: they share, least busy first
            assert c["CUDA_VISIBLE_DEVICES"] == "0"
    assert pool.busy == {"0": 0, "1": 0}
    with pool.claim() as again:
        assert again["CUDA_VISIBLE_DEVICES"] == "0"


def test_concurrent_claims_spread_over_the_gpus():
    pool = GpuPool(["0", "1", "2", "3"])
    seen, barrier = [], threading.Barrier(4)

    def stage():
        with pool.claim() as env:
            seen.append(env["CUDA_VISIBLE_DEVICES"])
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=stage) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == ["0", "1", "2", "3"]


def test_all_gpus_per_stage_for_a_torchrun_job():
    with GpuPool(["0", "1"], per_stage="all").claim() as env:
        assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    with pytest.raises(VgsError, match="VGS_GPUS_PER_STAGE"):
        GpuPool(["0"], per_stage="2")
