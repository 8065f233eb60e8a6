"""How much digit information the PVAE latents hold, beyond Table 1's k-means purity.

Reads the exported test (and validation) posteriors of `pvae` and `pvae-nocontrast` and prints,
per latent: k-means purity of the posterior means over ten k-means seeds (the pipeline uses
`seed`), purity of one posterior sample per input, KL to the prior in nats and the number of
active dimensions (mean KL > 0.1 nats), and the test accuracy of a linear digit probe (logistic
regression fitted on the validation means or samples). The numbers in
vgs/methods/pvae2018/README.md ("Results and where they fall short") come from this script.

    python benchmarks/pvae2018_latent_diagnostics.py            # after `dvc repro pvae2018-report`
"""
import argparse
from pathlib import Path

import h5py
import numpy as np
from sklearn.linear_model import LogisticRegression

from vgs.eval.clustering import kmeans_purity
from vgs.params import Params

LATENTS = (("image", "z_i"), ("audio", "z_a"), ("image", "z_s"), ("audio", "z_s"))


def load(path: Path, modality: str, latent: str):
    with h5py.File(path, "r") as f:
        group = f[modality]
        return group[f"{latent}_mean"][:], group[f"{latent}_logvar"][:], group["labels"][:]


def draw(mean, logvar, rng):
    return mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", default="data/embeddings/pvae2018")
    ap.add_argument("--models", nargs="+", default=["pvae", "pvae-nocontrast"])
    ap.add_argument("--kmeans-seeds", type=int, default=10)
    args = ap.parse_args()
    seed = Params.load().int("seed")
    seeds = [seed] + list(range(args.kmeans_seeds - 1))

    print("| model | latent | purity (seed) | purity over seeds: mean [min, max] | purity of samples "
          "| KL nats | active dims | probe acc (means) | probe acc (samples) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        root = Path(args.embeddings) / model
        for modality, latent in LATENTS:
            mean_t, logvar_t, y_t = load(root / "test.h5", modality, latent)
            mean_v, logvar_v, y_v = load(root / "val.h5", modality, latent)
            rng = np.random.default_rng(seed)
            samples_t, samples_v = draw(mean_t, logvar_t, rng), draw(mean_v, logvar_v, rng)
            purities = [kmeans_purity(mean_t, y_t, seed=s) for s in seeds]
            kl = 0.5 * (np.exp(logvar_t) + mean_t ** 2 - 1 - logvar_t)
            probe_means = LogisticRegression(max_iter=2000).fit(mean_v, y_v).score(mean_t, y_t)
            probe_samples = LogisticRegression(max_iter=2000).fit(samples_v, y_v).score(samples_t, y_t)
            print(f"| {model} | {modality} {latent} | {purities[0]:.3f} | {np.mean(purities):.3f} "
                  f"[{min(purities):.3f}, {max(purities):.3f}] | {kmeans_purity(samples_t, y_t, seed=seed):.3f} "
                  f"| {kl.sum(1).mean():.1f} | {int((kl.mean(0) > 0.1).sum())} | {probe_means:.3f} "
                  f"| {probe_samples:.3f} |", flush=True)


if __name__ == "__main__":
    main()
