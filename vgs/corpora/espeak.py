"""Offline text-to-speech with eSpeak NG, through ctypes and the `espeakng-loader` wheel.

The wheel ships libespeak-ng (1.52) and espeak-ng-data for every language, so no system
package and no subprocess is needed. The library is driven through its C API
(`speak_lib.h`): `espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)` (22,050 Hz), a synth
callback that collects the int16 samples, `espeak_SetVoiceByName("hi+m3")` (language plus an
optional voice variant from espeak-ng-data/voices/!v), `espeak_SetParameter` for rate, pitch,
pitch range and word gap, and `espeak_TextToPhonemes` for the phonemes of a text.

Reproducibility. eSpeak keeps synthesis state in static variables (wave phase, pitch, echo
buffer, resonators) from one utterance to the next, and seeds its noise generator from the
clock, so two identical calls on one loaded library give different samples (even different
lengths). Each call here therefore loads a fresh instance of the library (dlopen), seeds its
noise generator (`espeak_ng_SetRandSeed`), synthesizes and unloads it again (dlclose): the
samples depend only on the arguments, not on what was spoken before or in which process.
That costs about 3 ms per call. Calls are serialised by a lock (the library is not
thread-safe); use processes for parallelism.
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vgs.errors import VgsError

SAMPLE_RATE = 22050
VOICE_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000     # return an error instead of calling exit() when data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_RATE, _PITCH, _RANGE, _WORDGAP = 1, 3, 4, 7
RATE_LIMITS = (80, 450)             # espeakRATE_MINIMUM / espeakRATE_MAXIMUM, words per minute
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)

_INSTALL_HINT = "install the wheel into the project's environment: pip install 'espeakng-loader>=0.2'"


class EspeakError(VgsError):
    """eSpeak NG cannot be loaded, or a voice or text cannot be synthesized."""


def _default_paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakError("the Python package espeakng-loader (eSpeak NG library and data) is not installed",
                          hint=_INSTALL_HINT) from None
    try:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except RuntimeError as exc:
        raise EspeakError(f"espeakng-loader is installed but incomplete: {exc}",
                          hint="reinstall it: pip install --force-reinstall 'espeakng-loader>=0.2'") from None


class Espeak:
    """eSpeak NG speech and phonemes. Every call runs on a freshly loaded library instance."""

    def __init__(self, library: str | Path | None = None, data: str | Path | None = None):
        default_library, default_data = (None, None) if library and data else _default_paths()
        self.library = str(library or default_library)
        self.data = str(data or default_data)
        self._lock = threading.Lock()
        self._samples: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)   # kept alive as long as self
        if not Path(self.library).is_file():
            raise EspeakError(f"eSpeak NG library {self.library} not found", hint=_INSTALL_HINT)
        if not (Path(self.data) / "phontab").is_file():
            raise EspeakError(f"eSpeak NG data directory {self.data} not found or incomplete (no phontab)",
                              hint=_INSTALL_HINT)
        with self._instance() as lib:
            self.version = lib.espeak_Info(None).decode()

    # -- library instances ----------------------------------------------------------------
    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    @contextmanager
    def _instance(self):
        """A freshly loaded, initialised library; unloaded again afterwards (see module doc)."""
        import _ctypes

        with self._lock:
            try:
                lib = ctypes.CDLL(self.library, mode=ctypes.RTLD_LOCAL)
            except OSError as exc:
                raise EspeakError(f"eSpeak NG library {self.library} cannot be loaded: {exc}",
                                  hint=_INSTALL_HINT) from None
            try:
                try:
                    _declare(lib)
                except AttributeError as exc:
                    raise EspeakError(f"{self.library} lacks part of the eSpeak NG 1.52 API ({exc})",
                                      hint=_INSTALL_HINT) from None
                rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data.encode(),
                                             _INITIALIZE_DONT_EXIT)
                if rate != SAMPLE_RATE:
                    raise EspeakError(f"eSpeak NG failed to initialise with data {self.data} "
                                      f"(returned {rate}, expected {SAMPLE_RATE} Hz)", hint=_INSTALL_HINT)
                lib.espeak_SetSynthCallback(self._callback)
                try:
                    yield lib
                finally:
                    lib.espeak_Terminate()
            finally:
                handle = lib._handle
                del lib
                _ctypes.dlclose(handle)

    @staticmethod
    def _voice(lib, language: str, variant: str | None) -> None:
        if variant is not None and variant not in VOICE_VARIANTS:
            # eSpeak silently ignores unknown variants, so check them here.
            raise EspeakError(f"unknown eSpeak NG voice variant {variant!r}",
                              hint="use one of " + ", ".join(VOICE_VARIANTS))
        name = language if variant is None else f"{language}+{variant}"
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise EspeakError(f"eSpeak NG has no voice {name!r}",
                              hint="use a language code of espeak-ng-data/lang, e.g. en-us, hi, ja")

    # -- public API -----------------------------------------------------------------------
    def check_voice(self, language: str, variant: str | None = None) -> None:
        """Raise EspeakError unless `language` (with `variant`) can be selected."""
        with self._instance() as lib:
            self._voice(lib, language, variant)

    def phonemes(self, text: str, language: str, ipa: bool = True) -> str:
        """The phonemes eSpeak speaks for `text` (IPA by default), clauses joined by spaces."""
        with self._instance() as lib:
            self._voice(lib, language, None)
            buf = ctypes.c_char_p(text.encode("utf-8"))
            ptr = ctypes.cast(ctypes.pointer(buf), ctypes.POINTER(ctypes.c_void_p))
            parts = []
            while ptr.contents.value:
                out = lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, _PHONEMES_IPA if ipa else 0)
                if out:
                    parts.append(out.decode("utf-8").strip())
            return " ".join(p for p in parts if p)

    def synthesize(self, text: str, language: str, variant: str | None = None, rate: int = 175,
                   pitch: int = 50, pitch_range: int = 50, word_gap: int = 0, seed: int = 0) -> np.ndarray:
        """int16 samples at SAMPLE_RATE (22,050 Hz). rate in words per minute (80-450); pitch and
        pitch_range 0-100 (50 = the voice's own); word_gap: extra pause between words in units of
        10 ms; seed: eSpeak's noise generator (breathy variants). Same arguments -> same samples."""
        if not RATE_LIMITS[0] <= rate <= RATE_LIMITS[1]:
            raise EspeakError(f"eSpeak NG rate {rate} is outside {RATE_LIMITS[0]}-{RATE_LIMITS[1]} words per minute")
        for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
            if not 0 <= value <= 100:
                raise EspeakError(f"eSpeak NG {name} {value} is outside 0-100")
        with self._instance() as lib:
            self._voice(lib, language, variant)
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_WORDGAP, word_gap)):
                lib.espeak_SetParameter(param, int(value), 0)
            lib.espeak_ng_SetRandSeed(int(seed))
            self._samples = []
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise EspeakError(f"eSpeak NG could not synthesize {text!r} with voice {language} (error {err})")
            lib.espeak_Synchronize()
            samples, self._samples = self._samples, []
        if not samples:
            raise EspeakError(f"eSpeak NG produced no audio for {text!r} with voice {language}")
        return np.concatenate(samples).astype(np.int16, copy=False)


def _declare(lib) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p


_shared: Espeak | None = None


def shared_espeak() -> Espeak:
    """One Espeak object per process (it holds no synthesis state between calls)."""
    global _shared
    if _shared is None:
        _shared = Espeak()
    return _shared
