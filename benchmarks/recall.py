"""Recall@k at scale: the chunked implementation (vgs.eval.retrieval) and a plain full-matrix one.

Measures, each in a fresh process (peak RSS is that process's ru_maxrss, so it includes the
embeddings themselves, 2 x N x d x 4 bytes):
  * chunked `recall_at_k` at --n x --n candidates, d = --dim (default 100,000 x 100,000 x 1,024);
  * at --compare-n, the chunked version side by side with a plain full-matrix version (the whole
    N x N score matrix of each direction at once), checking that both give identical per-query
    counts (greater, ties) and identical R@k.
Before that, a matmul backend check on one block of queries (numpy/OpenBLAS against torch/MKL,
both on every core): the faster one is what vgs.eval.retrieval uses.

Data: a ~ N(0, I) and b = a + noise * N(0, I), float32, seeded, so R@k is between chance and 1.
Target (the issue): 100,000 x 100,000 at d = 1,024 on this 2-core CPU with peak RSS under 2 GiB.

    python benchmarks/recall.py                       # full size; a few minutes on 2 cores
    python benchmarks/recall.py --n 20000 --compare-n 5000 --check
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TARGET_N, TARGET_DIM, TARGET_PEAK_MIB = 100_000, 1024, 2048
KS = (1, 5, 10)


# -- one measurement, in its own process -----------------------------------------------------------
def make_data(n: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generated in place in float32: no float64 temporaries inflate the peak."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, dim), dtype=np.float32)
    b = rng.standard_normal((n, dim), dtype=np.float32)
    b *= np.float32(noise)
    b += a
    return a, b


def full_matrix_recall(a: np.ndarray, b: np.ndarray, ks=KS):
    """The plain version: per direction, the whole N x N cosine matrix, true scores on its diagonal.

    Same score formula as the chunked code, (q / |q|) . c * (1 / |c|), so the two must agree bit
    for bit; what differs is only that nothing is chunked."""
    from vgs.eval.retrieval import hit_probability

    def inverse_norms(x):
        x64 = x.astype(np.float64)
        return (1.0 / np.sqrt(np.einsum("ij,ij->i", x64, x64))).astype(np.float32)

    inv_a, inv_b = inverse_norms(a), inverse_norms(b)

    def direction(queries, inv_q, candidates, inv_c):
        scores = (queries * inv_q[:, None]) @ candidates.T
        scores *= inv_c
        true_scores = np.diagonal(scores).copy()[:, None]
        greater = np.count_nonzero(scores > true_scores, axis=1)
        ties = np.count_nonzero(scores == true_scores, axis=1) - 1
        return greater, ties

    counts = {"a2b": direction(a, inv_a, b, inv_b), "b2a": direction(b, inv_b, a, inv_a)}
    recall = {d: {k: float(hit_probability(g, t, k).mean()) for k in ks} for d, (g, t) in counts.items()}
    return recall, counts


def chunked_counts(a: np.ndarray, b: np.ndarray, chunk_size: int):
    from vgs.eval.retrieval import true_match_counts

    return {"a2b": true_match_counts(a, b, chunk_size), "b2a": true_match_counts(b, a, chunk_size)}


def peak_rss_mib() -> tuple[float, float]:
    """(ru_maxrss, VmHWM) in MiB. Linux carries ru_maxrss over from the parent at fork/exec, so it
    is only this process's own peak when the parent is small (the driver is: it runs all heavy work
    in children); VmHWM belongs to this process's address space alone."""
    hwm = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, hwm


def run_one(args) -> dict:
    from vgs.eval.retrieval import recall_at_k  # imported outside the timer

    a, b = make_data(args.n, args.dim, args.noise, args.seed)
    before_mib = peak_rss_mib()[0]
    start = time.perf_counter()
    cpu_start = time.process_time()
    counts = None
    if args._run == "chunked":
        result = recall_at_k(a, b, ks=KS, chunk_size=args.chunk_size)  # the public entry point, timed
        recall = {"a2b": result.a2b, "b2a": result.b2a}
    else:
        recall, counts = full_matrix_recall(a, b)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if args._run == "chunked" and args.counts:
        counts = chunked_counts(a, b, args.chunk_size)  # untimed: only to compare query by query
    digest = None
    if counts is not None:
        sha = hashlib.sha256()
        for direction in ("a2b", "b2a"):
            for array in counts[direction]:
                sha.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        digest = sha.hexdigest()
    return {"method": args._run, "n": args.n, "dim": args.dim, "chunk_size": args.chunk_size,
            "seconds": seconds, "cpu_seconds": cpu,
            "peak_rss_mib": peak_rss_mib()[0], "peak_vmhwm_mib": peak_rss_mib()[1],
            "rss_before_mib": before_mib, "data_mib": (a.nbytes + b.nbytes) / 2 ** 20,
            "recall": recall, "counts_sha256": digest}


# -- the driver ------------------------------------------------------------------------------------
def measure(method: str, n: int, args, counts: bool = False):
    cmd = [sys.executable, __file__, "--_run", method, "--n", str(n), "--dim", str(args.dim),
           "--chunk-size", str(args.chunk_size), "--noise", str(args.noise), "--seed", str(args.seed)]
    cmd += ["--_counts"] if counts else []
    print(f"  running {method} at N = {n:,} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"{method} at N = {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def backend_check(n: int, dim: int, chunk_size: int, repeats: int = 3) -> list[tuple[str, float, float]]:
    """(backend, matmul GFLOP/s, count ms) for one block: chunk_size queries against n candidates."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a, b = make_data(n, dim, 1.0, 0)
    queries = a[:chunk_size]
    flops = 2 * chunk_size * n * dim
    results = []

    def best(f):
        f()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return min(times)

    scores = queries @ b.T
    true = scores[:, :1].copy()
    matmul = best(lambda: queries @ b.T)
    count = best(lambda: (np.count_nonzero(scores > true, axis=1), np.count_nonzero(scores == true, axis=1)))
    results.append(("numpy (OpenBLAS)", flops / matmul / 1e9, count * 1000))
    tq, tb = torch.from_numpy(queries), torch.from_numpy(b)
    ts, tt = torch.from_numpy(scores), torch.from_numpy(true)
    matmul = best(lambda: tq @ tb.T)
    count = best(lambda: (torch.count_nonzero(ts > tt, dim=1), torch.count_nonzero(ts == tt, dim=1)))
    results.append((f"torch {torch.__version__} (MKL)", flops / matmul / 1e9, count * 1000))
    return results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def main():
    from vgs.eval.retrieval import DEFAULT_CHUNK_SIZE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=TARGET_N, help="items per view for the at-scale run")
    ap.add_argument("--dim", type=int, default=TARGET_DIM)
    ap.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="queries per block")
    ap.add_argument("--compare-n", type=int, default=20_000, help="N for chunked vs full matrix (0: skip)")
    ap.add_argument("--noise", type=float, default=7.0, help="b = a + noise * N(0, I)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the raw measurements here")
    ap.add_argument("--check", action="store_true", help="exit 1 if results differ or the memory target is missed")
    ap.add_argument("--_run", choices=["chunked", "full", "backend"], help=argparse.SUPPRESS)
    ap.add_argument("--_counts", dest="counts", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._run == "backend":
        print(json.dumps(backend_check(args.n, args.dim, args.chunk_size)))
        return
    if args._run:
        print(json.dumps(run_one(args)))
        return

    load_before = os.getloadavg()
    backends = measure("backend", args.compare_n or min(args.n, 20_000), args)
    runs = []
    if args.compare_n:
        runs += [measure("chunked", args.compare_n, args, counts=True), measure("full", args.compare_n, args)]
    runs.append(measure("chunked", args.n, args))
    load_after = os.getloadavg()

    print(f"\nmachine: {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}, numpy "
          f"{np.__version__}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"data: a ~ N(0, I), b = a + {args.noise:g} * N(0, I), float32, seed {args.seed}; ks = {KS}\n")
    print(f"matmul backend, one block ({args.chunk_size} x {args.dim}) @ ({args.dim} x "
          f"{args.compare_n or min(args.n, 20_000):,}), best of 3:")
    print_table(("backend", "matmul GFLOP/s", "count greater + ties, ms"),
                [(name, f"{gflops:.0f}", f"{ms:.1f}") for name, gflops, ms in backends])
    print()
    rows = []
    for r in runs:
        method = f"chunked ({r['chunk_size']} queries)" if r["method"] == "chunked" else "full matrix"
        avg = {k: (r["recall"]["a2b"][str(k)] + r["recall"]["b2a"][str(k)]) / 2 for k in KS}
        rows.append((method, f"{r['n']:,}", str(r["dim"]), f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}",
                     f"{r['peak_rss_mib']:.0f} / {r['peak_vmhwm_mib']:.0f}", f"{r['data_mib']:.0f}",
                     " / ".join(f"{avg[k]:.4f}" for k in KS)))
    print_table(("method", "N", "d", "seconds", "CPU s", "peak RSS MiB (ru_maxrss / VmHWM)", "of which embeddings MiB",
                 "avgR1 / avgR5 / avgR10"), rows)

    failed = []
    if args.compare_n:
        chunked, full = runs[0], runs[1]
        same_counts = chunked["counts_sha256"] == full["counts_sha256"]
        same_recall = chunked["recall"] == full["recall"]
        print(f"\nchunked vs full matrix at N = {args.compare_n:,}: per-query counts "
              f"{'identical' if same_counts else 'DIFFERENT'} (sha256 {chunked['counts_sha256'][:12]} / "
              f"{full['counts_sha256'][:12]}), R@k {'identical' if same_recall else 'DIFFERENT'}; "
              f"full matrix peak RSS {full['peak_rss_mib'] / chunked['peak_rss_mib']:.1f}x the chunked one")
        if not (same_counts and same_recall):
            failed.append("identical results")
    at_scale = runs[-1]
    if at_scale["n"] == TARGET_N and at_scale["dim"] == TARGET_DIM:
        met = at_scale["peak_rss_mib"] < TARGET_PEAK_MIB
        print(f"target: {TARGET_N:,} x {TARGET_N:,} at d = {TARGET_DIM:,} with peak RSS under "
              f"{TARGET_PEAK_MIB} MiB: {at_scale['peak_rss_mib']:.0f} MiB, {'met' if met else 'MISSED'}")
        if not met:
            failed.append("memory target")
    if load_before[0] > 0.5 or load_after[0] > 0.5:
        print("note: the machine was busy (load average above); wall times are distorted.")
    if args.json:
        Path(args.json).write_text(json.dumps({"backends": backends, "runs": runs, "load_before": load_before,
                                               "load_after": load_after}, indent=2))
    if args.check and failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
