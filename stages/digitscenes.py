"""DVC stage digitscenes: trilingual spoken captions of MNIST digit scenes at data/raw/digitscenes/.

Reads the mnist and fsdd manifests (their train/val/test splits), writes the Places
audio-caption layout (vgs/corpora/digitscenes.py): images/, wavs/<lang>/, <lang>_<split>.json,
scenes.json and README.txt, all at once (built in a temporary sibling, then renamed).
"""
import argparse
import time

from vgs.corpora.digitscenes import DigitScenesConfig, build_digitscenes, load_input_manifest
from vgs.params import Params
from vgs.paths import manifest_path, raw_dir
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=str(raw_dir("digitscenes")))
    ap.add_argument("--mnist", default=str(manifest_path("mnist")), help="MNIST manifest")
    ap.add_argument("--fsdd", default=str(manifest_path("fsdd")), help="FSDD manifest")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    config = DigitScenesConfig.from_params(params)
    seed = params.int("seed")
    mnist = load_input_manifest(args.mnist, "mnist", "image")
    fsdd = load_input_manifest(args.fsdd, "fsdd", "audio") if "en" in config.languages else None
    start = time.perf_counter()
    summary = build_digitscenes(args.out, mnist, fsdd, config, seed=seed, progress=not args.no_progress)
    took = time.perf_counter() - start
    print(f"{args.out}: " + ", ".join(f"{k}={v}" for k, v in summary["scenes"].items())
          + f" scenes x {len(config.languages)} languages in {took:.0f} s")
    for lang, mean in summary["fits"].items():
        print(f"  {lang}: a test caption fits {mean:.2f} test scenes on average "
              f"(oracle R@1 bound ~ mean 1/fits), {summary['audio_seconds'][lang] / 3600:.2f} h of audio")


if __name__ == "__main__":
    main()
