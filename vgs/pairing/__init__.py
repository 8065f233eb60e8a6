"""Pair stores (which items of two views train together) and instance pairing of spoken-caption corpora.

This package imports nothing itself: a stage that reads one module depends on that module alone.
"""
