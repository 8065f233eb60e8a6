"""NIST SPHERE headers (the format of TIDIGITS, TIMIT, WSJ and other LDC corpora).

A SPHERE file starts with an ASCII header:

    NIST_1A
       1024                       <- header size in bytes (a multiple of 1024)
    sample_rate -i 20000          <- name, type (-i int, -r real, -sN string of N bytes), value
    sample_count -i 15872
    channel_count -i 1
    sample_n_bytes -i 2
    sample_byte_format -s2 10     <- "01" little-endian, "10" big-endian, "1" single byte
    sample_coding -s3 pcm         <- "pcm", "ulaw", or "pcm,embedded-shorten-v1.1" (compressed)
    end_head

and the samples follow at `header size`. libsndfile reads uncompressed SPHERE (PCM, u-law,
a-law) itself, so the feature extractor needs nothing special for it. What libsndfile cannot read
is the shorten-compressed variant in which LDC shipped TIDIGITS and other corpora; it reports
"unimplemented format". We read the header ourselves so the adapter can give durations without
decoding audio and can say plainly which file is compressed and how to convert it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vgs.errors import AudioError

MAGIC = b"NIST_1A"
# Codings that embed a compressed stream; libsndfile decodes none of them.
COMPRESSED_MARKERS = ("shorten", "wavpack", "shortpack")
CONVERT_HINT = (
    "convert the corpus to uncompressed audio first with LDC's sph2pipe (also shipped with Kaldi "
    "as tools/sph2pipe_v2.5), keeping the directory layout, e.g.\n"
    "    cd <root> && find . -iname '*.wav' | while read f; do mkdir -p \"../pcm/$(dirname \"$f\")\";"
    " sph2pipe -f wav \"$f\" \"../pcm/$f\"; done\n"
    "  then point the corpus root at ../pcm (RIFF WAV and PCM SPHERE are both accepted). "
    "sox cannot decode shorten, so use sph2pipe.")


@dataclass(frozen=True)
class SphereHeader:
    header_size: int
    fields: dict

    @property
    def sample_rate(self) -> int:
        return int(self.fields["sample_rate"])

    @property
    def sample_count(self) -> int:
        return int(self.fields["sample_count"])

    @property
    def channel_count(self) -> int:
        return int(self.fields.get("channel_count", 1))

    @property
    def sample_n_bytes(self) -> int:
        return int(self.fields.get("sample_n_bytes", 2))

    @property
    def sample_byte_format(self) -> str:
        return str(self.fields.get("sample_byte_format", "01"))

    @property
    def sample_coding(self) -> str:
        # The SPHERE spec makes "pcm" the default when the field is absent.
        return str(self.fields.get("sample_coding", "pcm"))

    @property
    def compressed(self) -> bool:
        coding = self.sample_coding.lower()
        return any(marker in coding for marker in COMPRESSED_MARKERS)

    @property
    def data_bytes(self) -> int:
        return self.sample_count * self.channel_count * self.sample_n_bytes


def is_sphere(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_sphere_header(path: str | Path) -> SphereHeader:
    """Parse the header of a SPHERE file; AudioError naming the file if it is not one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            if not head.startswith(MAGIC):
                raise AudioError(f"{path} is not a NIST SPHERE file (no NIST_1A magic)")
            lines = head.split(b"\n", 2)
            try:
                header_size = int(lines[1].strip())
            except (IndexError, ValueError):
                raise AudioError(f"{path}: SPHERE header size line is malformed") from None
            if header_size < 16 or header_size > 1 << 20:
                raise AudioError(f"{path}: implausible SPHERE header size {header_size}")
            if header_size > len(head):
                head += f.read(header_size - len(head))
    except OSError as exc:
        raise AudioError(f"{path} cannot be read: {exc}") from None
    if len(head) < header_size:
        raise AudioError(f"{path}: file ends inside its {header_size}-byte SPHERE header (truncated?)")
    text = head[:header_size].decode("ascii", errors="replace")
    fields: dict = {}
    ended = False
    for line in text.split("\n")[2:]:
        line = line.rstrip("\r")
        if line.strip() == "end_head":
            ended = True
            break
        if not line.strip() or line.startswith(";"):
            continue
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise AudioError(f"{path}: malformed SPHERE header line {line!r}")
        name, kind, value = parts
        try:
            if kind == "-i":
                fields[name] = int(value.split()[0])
            elif kind == "-r":
                fields[name] = float(value.split()[0])
            elif kind.startswith("-s"):
                # -sN: a string of exactly N bytes (it may contain spaces).
                n = int(kind[2:])
                fields[name] = value[:n]
            else:
                raise ValueError(kind)
        except (ValueError, IndexError):
            raise AudioError(f"{path}: malformed SPHERE header line {line!r}") from None
    if not ended:
        raise AudioError(f"{path}: SPHERE header has no end_head within {header_size} bytes")
    for required in ("sample_rate", "sample_count"):
        if required not in fields:
            raise AudioError(f"{path}: SPHERE header lacks {required}")
    return SphereHeader(header_size=header_size, fields=fields)


def check_sphere_readable(path: str | Path, header: SphereHeader | None = None) -> SphereHeader:
    """The header of a SPHERE file we can decode; AudioError with the fix otherwise."""
    path = Path(path)
    header = header or read_sphere_header(path)
    if header.compressed:
        raise AudioError(f"{path} is compressed NIST SPHERE (sample_coding {header.sample_coding!r}), "
                         "which libsndfile cannot decode", hint=CONVERT_HINT)
    coding = header.sample_coding.lower()
    if coding not in ("pcm", "ulaw", "mu-law", "alaw"):
        raise AudioError(f"{path}: unsupported SPHERE sample_coding {header.sample_coding!r}",
                         hint=CONVERT_HINT)
    size = path.stat().st_size
    if size < header.header_size + header.data_bytes:
        raise AudioError(f"{path}: SPHERE header promises {header.data_bytes} bytes of samples, the file "
                         f"holds {size - header.header_size} (truncated?)",
                         hint="restore the file from the corpus media")
    return header
