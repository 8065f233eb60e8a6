"""Corpus adapters: one module per corpus, each turning the corpus's real on-disk layout into a
manifest (lhotse-recipe style).

This package imports nothing itself, so that a stage which reads one adapter runs (and depends
on, through dvc.yaml's derived code deps) that adapter alone. The dispatchers by name are
vgs/corpora/prepare.py (raw corpora) and vgs/corpora/prepare_captions.py (spoken-caption corpora).
"""
