"""The one trainer (vgs/train/trainer.py) and the resume rule (vgs/train/provenance.py).

This package imports nothing itself: a stage that reads one module depends on that module alone.
"""
