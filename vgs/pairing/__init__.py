from vgs.pairing.instance import build_instance_pairs
from vgs.pairing.pairs import PairStore, View, build_pairs, draw_same_class

__all__ = ["PairStore", "View", "build_instance_pairs", "build_pairs", "draw_same_class"]
