"""Feature stores (Zarr), pair stores, HDF5 export and torch Dataset views."""
from vgs.store.feature_store import FeatureStore, FeatureStoreWriter, fixed_length

__all__ = ["FeatureStore", "FeatureStoreWriter", "fixed_length"]
