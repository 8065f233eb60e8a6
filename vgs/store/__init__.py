"""Feature stores (Zarr), pair stores, HDF5 export and torch Dataset views.

This package imports nothing itself: a stage that reads one module depends on that module alone.
"""
