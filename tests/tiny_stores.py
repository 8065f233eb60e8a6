"""Tiny feature stores for end-to-end method tests (shared by the Leidal and PVAE tests)."""
from vgs.store.feature_store import FeatureStoreWriter


def write_tiny_store(path, items, corpus, modality, item_shape=None):
    """A feature store from (utt_id, frames, label, split, speaker) tuples."""
    w = FeatureStoreWriter(path, dim=items[0][1].shape[-1])
    for utt, feats, label, split, speaker in items:
        w.add(utt, feats, label=label, speaker=speaker, split=split)
    attrs = {"corpus": corpus, "modality": modality, "config": {"kind": "test"}, "config_hash": corpus,
             "source_manifest_sha256": "0" * 64}
    if item_shape:
        attrs["item_shape"] = list(item_shape)
    w.close(attrs)
