"""One manifest record type for every corpus, stored as JSON Lines.

A record says where an item lives (`source`: a path relative to the manifest's `root`, or
`file#index` for items packed in one file such as MNIST), what it is (`modality`, `label`,
`transcript`) and how it is split. Audio records carry `num_samples` and `sample_rate`, so
durations are known without opening the audio.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from vgs.errors import ManifestError
from vgs.utils.atomic import atomic_path

MODALITIES = ("audio", "image")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRecord:
    id: str
    source: str
    modality: str
    split: str
    label: int | None = None
    transcript: str | None = None
    speaker: str | None = None
    num_samples: int | None = None
    sample_rate: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.num_samples is None or not self.sample_rate:
            return None
        return self.num_samples / self.sample_rate

    def validate(self, where: str = "") -> "ManifestRecord":
        def bad(msg: str) -> ManifestError:
            return ManifestError(f"{where}record {self.id!r}: {msg}")

        if not isinstance(self.id, str) or not self.id:
            raise ManifestError(f"{where}record has no id")
        if not isinstance(self.source, str) or not self.source:
            raise bad("has no source")
        if self.modality not in MODALITIES:
            raise bad(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.split not in SPLITS:
            raise bad(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.label is not None and (isinstance(self.label, bool) or not isinstance(self.label, int)):
            raise bad(f"label must be an integer or null, got {self.label!r}")
        if self.modality == "audio":
            if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
                raise bad(f"audio needs a positive integer sample_rate, got {self.sample_rate!r}")
            if not isinstance(self.num_samples, int) or self.num_samples < 0:
                raise bad(f"audio needs a non-negative integer num_samples, got {self.num_samples!r}")
        return self

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["duration"] = self.duration
        if not d["extra"]:
            d.pop("extra")
        return json.dumps(d, sort_keys=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "ManifestRecord":
        if not isinstance(d, dict):
            raise ManifestError(f"{where}expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known - {"duration"}
        if unknown:
            raise ManifestError(f"{where}unknown field(s) {sorted(unknown)}")
        missing = [k for k in ("id", "source", "modality", "split") if k not in d]
        if missing:
            raise ManifestError(f"{where}missing field(s) {missing}")
        kwargs = {k: v for k, v in d.items() if k in known}
        return cls(**kwargs).validate(where)


@dataclass
class Manifest:
    """The records of one corpus plus the directory their relative sources live under."""

    corpus: str
    root: str
    records: list[ManifestRecord]
    # What the adapter left out and why, e.g. "skipped 12 multi-digit utterances"; printed by the
    # prepare stage and kept in the manifest header.
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ManifestRecord]:
        return iter(self.records)

    def split(self, name: str) -> list[ManifestRecord]:
        return [r for r in self.records if r.split == name]

    def resolve(self, record: ManifestRecord) -> Path:
        """The file behind a record (for packed sources, the container file)."""
        return Path(self.root) / record.source.split("#", 1)[0]


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    """Write a header line then one record per line, atomically. Ids must be unique."""
    seen: set[str] = set()
    for r in manifest.records:
        if r.id in seen:
            raise ManifestError(f"duplicate id {r.id!r} in corpus {manifest.corpus}")
        seen.add(r.id)
        r.validate()
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            header = {"_manifest": 1, "corpus": manifest.corpus, "root": str(manifest.root),
                      "num_records": len(manifest.records)}
            if manifest.notes:
                header["notes"] = list(manifest.notes)
            f.write(json.dumps(header) + "\n")
            for r in manifest.records:
                f.write(r.to_json() + "\n")


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest {path} not found",
                            hint="run the prepare stage first: dvc repro prepare@<corpus>")
    records: list[ManifestRecord] = []
    header = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}: "
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}malformed JSON ({exc.msg} at column {exc.colno})",
                                    hint="regenerate the manifest with the prepare stage") from None
            if lineno == 1 and isinstance(d, dict) and "_manifest" in d:
                header = d
                continue
            records.append(ManifestRecord.from_dict(d, where))
    if header is None:
        raise ManifestError(f"{path}: missing header line",
                            hint="regenerate the manifest with the prepare stage")
    if header.get("num_records") != len(records):
        raise ManifestError(f"{path}: header says {header.get('num_records')} records, found {len(records)}"
                            " (truncated file?)", hint="regenerate the manifest with the prepare stage")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: duplicate ids")
    return Manifest(corpus=header["corpus"], root=header["root"], records=records,
                    notes=list(header.get("notes", [])))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def group_by(records: Iterable[ManifestRecord], attr: str) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault(getattr(r, attr), []).append(r)
    return out
