"""Tiny spoken-caption corpora in their real on-disk layouts, with the bad inputs a real copy has
(shared by the end-to-end tests; tests/test_caption_adapters.py builds its own cleaner ones).

`write_flickr8k(root)` writes the Flickr8k audio captions plus Flickr8k layout under one root:

  <root>/flickr_audio/wav2capt.txt, wav2spk.txt, wavs/<image>_<n>.wav
  <root>/Flicker8k_Dataset/<image>.jpg          (sic: the spelling of Flickr8k_Dataset.zip)
  <root>/Flickr8k_text/Flickr_8k.{train,dev,test}Images.txt, Flickr8k.token.txt

with real JPEGs (Pillow; RGB of several sizes and orientations, one grey "L", one CMYK, one cut in
half) and 16-bit PCM WAVs of speech-like noise (noise through a moving formant-like band-pass, with
a syllable-rate envelope) at 16 kHz, one at 8 kHz, and one caption listed in wav2capt.txt whose
WAV is missing. What it wrote, and which file is which bad input, comes back as a `Flickr8kFixture`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}


@dataclass
class Flickr8kFixture:
    root: Path
    splits: dict[str, list[str]]          # split -> image file names (as the split lists name them)
    captions: dict[str, list[str]]        # image file name -> its WAV names (wav2capt.txt order)
    grey: str                             # image file names of the odd JPEGs
    cmyk: str
    truncated: str
    missing_wav: str                      # listed in wav2capt.txt, not on disk
    mixed_rate_wav: str                   # 8 kHz among 16 kHz files
    rates: dict[str, int] = field(default_factory=dict)   # WAV name -> sample rate (written files only)

    def image_id(self, name: str) -> str:
        return f"flickr8k-{Path(name).stem}"

    def caption_id(self, wav: str) -> str:
        return f"flickr8k-{Path(wav).stem}"

    @property
    def images(self) -> list[str]:
        return [n for names in self.splits.values() for n in names]


def speech_like(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """int16 noise shaped like speech: a band-pass around a drifting 'formant', gated at ~4 Hz."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    centre = rng.uniform(400, 2500)
    spectrum *= np.exp(-0.5 * ((freqs - centre) / 350.0) ** 2) + 0.6 * np.exp(-0.5 * ((freqs - 250) / 120.0) ** 2)
    x = np.fft.irfft(spectrum, n)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi))) ** 2
    x = x * envelope
    x = 0.4 * x / (np.abs(x).max() + 1e-9)
    return np.round(x * 32767).astype(np.int16)


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int], mode: str = "RGB") -> None:
    """A smooth random colour picture (blurred blocks), saved as a baseline JPEG in `mode`."""
    w, h = size
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(blocks, "RGB").resize((w, h), Image.BILINEAR)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=90)


def write_flickr8k(root: Path, n_train: int = 16, n_dev: int = 10, n_test: int = 10, captions_per_image: int = 2,
                   seconds: tuple[float, float] = (0.5, 0.9), seed: int = 0) -> Flickr8kFixture:
    """The tree described in the module docstring. The odd images are in train: the grey one first,
    then the CMYK one, then the truncated one; the missing and the 8 kHz WAVs are the second
    captions of two other training images (each image keeps at least one good caption)."""
    rng = np.random.default_rng(seed)
    audio, images, text = root / "flickr_audio", root / "Flicker8k_Dataset", root / "Flickr8k_text"
    (audio / "wavs").mkdir(parents=True, exist_ok=True)
    text.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "val": n_dev, "test": n_test}
    names, splits = [], {}
    for split, n in counts.items():
        splits[split] = [f"{1000 + len(names) + i}_{rng.integers(16**10):010x}.jpg" for i in range(n)]
        names += splits[split]
    grey, cmyk, truncated = splits["train"][:3]
    sizes = [(96, 72), (72, 96), (80, 80), (120, 64)]
    for k, name in enumerate(names):
        mode = "L" if name == grey else "CMYK" if name == cmyk else "RGB"
        write_jpeg(images / name, rng, sizes[k % len(sizes)], mode)
    data = (images / truncated).read_bytes()
    (images / truncated).write_bytes(data[: len(data) // 2])   # header intact, scan data cut

    missing_wav = f"{Path(splits['train'][3]).stem}_1.wav"
    mixed_rate_wav = f"{Path(splits['train'][4]).stem}_1.wav"
    captions, rates, capt, spk, tok = {}, {}, [], [], []
    for k, name in enumerate(names):
        captions[name] = []
        for n in range(captions_per_image):
            wav = f"{Path(name).stem}_{n}.wav"
            captions[name].append(wav)
            capt.append(f"{wav} {name} #{n}")
            spk.append(f"{wav} {k % 5 + 1}")
            tok.append(f"{name}#{n}\tcaption {n} of picture {k} .")
            if wav == missing_wav:
                continue
            rate = 8000 if wav == mixed_rate_wav else 16000
            sf.write(str(audio / "wavs" / wav), speech_like(rng, rng.uniform(*seconds), rate), rate,
                     subtype="PCM_16", format="WAV")
            rates[wav] = rate
    (audio / "wav2capt.txt").write_text("\n".join(capt) + "\n")
    (audio / "wav2spk.txt").write_text("\n".join(spk) + "\n")
    (text / "Flickr8k.token.txt").write_text("\n".join(tok) + "\n")
    for split, file in SPLIT_FILES.items():
        (text / file).write_text("".join(f"{n}\n" for n in splits[split]))
    return Flickr8kFixture(root=root, splits=splits, captions=captions, grey=grey, cmyk=cmyk, truncated=truncated,
                           missing_wav=missing_wav, mixed_rate_wav=mixed_rate_wav, rates=rates)
