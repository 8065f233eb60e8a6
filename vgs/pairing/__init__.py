from vgs.pairing.pairs import PairStore, View, build_pairs, draw_same_class

__all__ = ["PairStore", "View", "build_pairs", "draw_same_class"]
