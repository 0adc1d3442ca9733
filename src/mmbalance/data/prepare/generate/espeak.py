"""Speech from eSpeak NG, the open-source formant synthesiser, through its C library.

The library and its voice data come from the ``espeakng-loader`` wheel on PyPI (``pip install
'mmbalance[bench]'``): no system package, no download at run time. Only four calls of the C
API are used (``espeak_Initialize``, ``espeak_SetVoiceByName``, ``espeak_SetParameter``,
``espeak_Synth``) in synchronous mode, where the library hands every block of 16-bit samples to
a callback before ``espeak_Synth`` returns. ``espeak_TextToPhonemes`` gives the phonetic
transcription eSpeak itself speaks (Kirshenbaum ASCII), used as the text of a clip.

Determinism: eSpeak NG draws random numbers (seeded here per utterance through
``espeak_ng_SetRandSeed``) and also carries state from one utterance to the next inside the
library (measured: the same word spoken twice in a row gives different samples; re-initialising
does not reset it). So an utterance is a function of its text, voice, rate, pitch, seed *and of
every utterance the process spoke before*. The generators therefore speak their clips in a
fixed order in a fresh process (:func:`mmbalance.data.prepare.generate.store.generate`): the
same files on every run and machine with the same eSpeak NG wheel.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from mmbalance.errors import DataError

# espeak_AUDIO_OUTPUT and espeak_PARAMETER values of speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE = 1
_PARAM_PITCH = 3
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Speaker:
    """One initialised eSpeak NG library (one per process: the C library keeps global state).

    Example (needs ``espeakng-loader``)::

        speaker = Speaker()
        wave = speaker.say("7", voice="de+f3", rate=160, pitch=40)   # "sieben", float32
        speaker.phonemes("7", "de")                                     # "z'i:b@n"
    """

    _lock = threading.Lock()  # the library is not re-entrant

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:
            raise DataError(
                "generating the spoken-digit benchmarks needs eSpeak NG from PyPI: "
                "pip install 'mmbalance[bench]' (the espeakng-loader wheel)"
            ) from err
        try:
            self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as err:
            raise DataError(f"cannot load the eSpeak NG library of espeakng-loader: {err}") from err
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0))
        if self.sample_rate <= 0:
            raise DataError(f"eSpeak NG failed to initialise with its data at {data.decode()!r}")
        self._chunks: list[np.ndarray] = []

        def collect(samples: Any, count: int, events: Any) -> int:
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
            return 0  # 0: go on synthesising

        # kept on self: the C library holds a pointer to it for the life of the process
        self._callback = _CALLBACK(collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _voice(self, voice: str) -> None:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataError(f"eSpeak NG has no voice {voice!r} (language[+variant], e.g. 'de+f3')")

    def say(
        self, text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0
    ) -> np.ndarray:
        """Float32 samples in [-1, 1] at :attr:`sample_rate` of ``text`` spoken by ``voice``.

        ``rate`` is in words per minute (80-450), ``pitch`` 0-99 (50 is the voice's own),
        ``seed`` seeds the synthesiser's random numbers (see the module docstring).
        """
        with self._lock:
            self._voice(voice)
            self._lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._lib.espeak_ng_SetRandSeed(int(seed))
            self._chunks.clear()
            raw = text.encode()
            buf = ctypes.create_string_buffer(raw)
            self._lib.espeak_Synth(buf, len(raw) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            raise DataError(f"eSpeak NG produced no audio for {text!r} with voice {voice!r}")
        return np.concatenate(chunks).astype(np.float32) / 32768.0

    def phonemes(self, text: str, voice: str) -> str:
        """eSpeak's phonetic transcription of ``text`` in ``voice``'s language (ASCII)."""
        with self._lock:
            self._voice(voice)
            pointer = ctypes.c_char_p(text.encode())
            out = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, 0)
        return (out or b"").decode()


_SPEAKER: Speaker | None = None


def speaker() -> Speaker:
    """The process's :class:`Speaker` (initialised on first use)."""
    global _SPEAKER
    if _SPEAKER is None:
        _SPEAKER = Speaker()
    return _SPEAKER
