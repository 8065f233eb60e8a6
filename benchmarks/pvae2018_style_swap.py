"""Is the digit information in PVAE's z_i identity, or style that differs from digit to digit?

Two measurements on the trained `pvae` model and the MNIST test split, behind the z_i paragraph
of vgs/methods/pvae2018/README.md ("Results and where they fall short"):

1. Swap test. Decode an image from z_s of one example and z_i of another example of a different
   digit, then read the digit of the output with a logistic-regression classifier fitted on the
   MNIST training images. If z_i carried identity, outputs would often take the style example's
   digit. Rows: reconstruction (z_s and z_i of the same image, the classifier's ceiling on decoder
   outputs), z_i set to the prior mean, image-to-image swap, and speech-to-image (z_s from a
   spoken digit).
2. Style statistics. The paper names width, tilt and boldness as image style. Measured directly on
   the pixels (ink, bounding-box width and height, slant), how much digit do they hold (k-means
   purity, k=10, and a linear probe), and how well do z_i and z_s predict them (R^2 of a linear
   fit on validation, scored on test)?

    python benchmarks/pvae2018_style_swap.py           # after `dvc repro pvae2018-train@pvae`
"""
import argparse

import numpy as np
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

from vgs.eval.clustering import kmeans_purity
from vgs.methods.pvae2018.config import load_data_config, model_dir
from vgs.methods.pvae2018.data import DigitData, stats_from_model
from vgs.methods.pvae2018.inference import encode, load_trained
from vgs.methods.pvae2018.model import AUDIO, IMAGE
from vgs.params import Params

STYLE_NAMES = ("ink", "width", "height", "slant")


def style_statistics(images: np.ndarray) -> np.ndarray:
    """(N, 4) ink mass, bounding-box width and height (pixels above 0.5), and slant (mu11 / mu02)."""
    n, h, w = images.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    mass = images.reshape(n, -1).sum(1)
    cx = (images * xs).reshape(n, -1).sum(1) / mass
    cy = (images * ys).reshape(n, -1).sum(1) / mass
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    slant = (images * dx * dy).reshape(n, -1).sum(1) / (images * dy * dy).reshape(n, -1).sum(1)
    on = images > 0.5
    cols, rows = on.any(1), on.any(2)
    width = w - np.argmax(cols, 1) - np.argmax(cols[:, ::-1], 1)
    height = h - np.argmax(rows, 1) - np.argmax(rows[:, ::-1], 1)
    return np.stack([mass, width, height, slant], 1)


@torch.no_grad()
def decode_images(model, data: DigitData, zs: torch.Tensor, zi: torch.Tensor) -> np.ndarray:
    out = model.decode(IMAGE, {"s": zs, "i": zi})
    return np.stack([data.denormalise_image(o) for o in out]).reshape(len(zs), -1)


def means(model, data, modality, idx):
    return {k: torch.from_numpy(v[0]) for k, v in encode(model, data, modality, idx).items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pvae")
    ap.add_argument("--images", type=int, default=2000, help="test images in the swap test")
    args = ap.parse_args()
    params = Params.load()
    seed = params.int("seed")
    torch.manual_seed(seed)
    model, _ = load_trained(model_dir(args.model))
    data = DigitData(load_data_config(params))
    data.stats = stats_from_model(model)
    rng = np.random.default_rng([seed, 7])

    train_idx, val_idx, test_idx = (data.split(IMAGE, s) for s in ("train", "val", "test"))
    flat = data.images.reshape(len(data.images), -1)
    classifier = LogisticRegression(max_iter=300).fit(flat[train_idx], data.labels(IMAGE, train_idx))
    print(f"digit classifier (logistic regression on MNIST train pixels): test accuracy "
          f"{classifier.score(flat[test_idx], data.labels(IMAGE, test_idx)):.3f}")

    a = np.sort(rng.choice(test_idx, size=args.images, replace=False))
    ya = data.labels(IMAGE, a)
    partner = np.empty_like(a)
    test_labels = data.labels(IMAGE, test_idx)
    for j, y in enumerate(ya):
        partner[j] = rng.choice(test_idx[test_labels != y])
    yb = data.labels(IMAGE, partner)
    za, zb = means(model, data, IMAGE, a), means(model, data, IMAGE, partner)

    speech_idx = data.split(AUDIO, "test")
    speech_labels = data.labels(AUDIO, speech_idx)
    speech_for = np.array([rng.choice(speech_idx[speech_labels == y]) for y in ya])
    zs_speech = means(model, data, AUDIO, speech_for)["s"]

    print("\n| decoded from | n | digit of z_s source | digit of z_i source (a different digit) | other |")
    print("|---|---|---|---|---|")
    cases = {
        "z_s and z_i of the same image (reconstruction)": (za["s"], za["i"], None),
        "z_s of the image, z_i = 0 (prior mean)": (za["s"], torch.zeros_like(za["i"]), None),
        "z_s of image A, z_i of image B": (za["s"], zb["i"], yb),
        "z_s of a spoken digit, z_i of image B": (zs_speech, zb["i"], yb),
    }
    for name, (zs, zi, style_labels) in cases.items():
        pred = classifier.predict(decode_images(model, data, zs, zi))
        keep = (pred == ya).mean()
        took = (pred == style_labels).mean() if style_labels is not None else float("nan")
        other = 1 - keep - (0 if style_labels is None else took)
        took_s = "-" if style_labels is None else f"{took:.3f}"
        print(f"| {name} | {len(a)} | {keep:.3f} | {took_s} | {other:.3f} |", flush=True)

    style_test = style_statistics(data.images[test_idx])
    style_val = style_statistics(data.images[val_idx])
    scaler = StandardScaler().fit(style_val)
    y_val, y_test = data.labels(IMAGE, val_idx), data.labels(IMAGE, test_idx)
    purity = kmeans_purity(scaler.transform(style_test), y_test, seed=seed)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(style_val), y_val).score(
        scaler.transform(style_test), y_test)
    print(f"\nstyle statistics ({', '.join(STYLE_NAMES)}) of the {len(test_idx)} test images: "
          f"k-means purity (k=10) {purity:.3f}, linear digit probe {probe:.3f} (chance 0.10)")

    z_val, z_test = encode(model, data, IMAGE, val_idx), encode(model, data, IMAGE, test_idx)
    print("\n| predicted from | " + " | ".join(f"R^2 {n}" for n in STYLE_NAMES) + " |")
    print("|---" * (len(STYLE_NAMES) + 1) + "|")
    for latent in ("i", "s"):
        fit = LinearRegression().fit(z_val[latent][0], scaler.transform(style_val))
        pred = fit.predict(z_test[latent][0])
        target = scaler.transform(style_test)
        r2 = 1 - ((pred - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)
        print(f"| z_{latent} means | " + " | ".join(f"{v:.3f}" for v in r2) + " |")


if __name__ == "__main__":
    main()
