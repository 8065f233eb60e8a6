"""DVC stage smart-evaluate@<style>: conversion accuracy in both directions, judged by MLC/GLC."""
import argparse

from vgs.methods.smart.evaluate import eval_dir, evaluate_style
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("style")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    m = evaluate_style(Params.load(args.params), args.style)["metrics"]
    print(f"{eval_dir(args.style)}: image->audio {m['image_to_audio_test_acc']:.4f} "
          f"({m['image_to_audio_test_items']} test images), audio->image {m['audio_to_image_test_acc']:.4f} "
          f"({m['audio_to_image_test_items']} test clips); {m['wall_seconds']:.0f} s wall")


if __name__ == "__main__":
    main()
