"""Errors a user can act on.

Every error raised for bad input is a VgsError: it names the thing that is wrong and, through
`hint`, the fix. Entry points (the `vgs` command and every stage script) print these as one
readable message instead of a traceback.
"""
from __future__ import annotations


class VgsError(Exception):
    """An error caused by input, configuration or environment, not by a bug."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ParamError(VgsError):
    """A missing or invalid entry in params.yaml. The message names the dotted key."""


class DataError(VgsError):
    """A corpus, mirror or download problem: missing files, wrong layout."""


class ChecksumError(DataError):
    """A file whose sha256 is not the recorded one."""


class ManifestError(VgsError):
    """A manifest that cannot be parsed. The message names the file and line."""


class AudioError(VgsError):
    """Audio that cannot be used: corrupt, empty, wrong rate or channel count."""


class StoreError(VgsError):
    """A feature store, pair store or embedding file that is missing, partial or corrupt."""


class CheckpointError(VgsError):
    """A training checkpoint that is missing or unreadable."""
