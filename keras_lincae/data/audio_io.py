"""Reading audio files: listing, decoding, resampling, and the file readers of the pipelines.

Audio is decoded with ``soundfile`` (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1) and resampled
with ``scipy.signal.resample_poly``; arrays are float32 ``(channels, samples)``.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SAMPLE_RATE = 44100  # the rate audio is read at unless told otherwise (the models' rate)
SILENCE_RMS_DB = -60.0  # audio whose RMS is at or below this level (dBFS) counts as silent


class AudioDecodeError(ValueError):
    """An audio file exists but cannot be used: unreadable, empty, or with non-finite samples."""


def rms_db(audio):
    """RMS level in dBFS over the last axis: ``(..., samples)`` -> ``(...)`` float64."""
    return 10.0 * np.log10(np.mean(np.square(audio, dtype=np.float64), axis=-1) + 1e-20)


def is_audio_name(name, extensions=AUDIO_EXTENSIONS):
    """True for a file name with one of ``extensions`` (any case), except AppleDouble ``._*``."""
    return name.lower().endswith(tuple(extensions)) and not name.startswith("._")


def list_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Sorted paths (str) of the audio files under ``folder``, searched recursively.

    ``extensions`` are matched case-insensitively; hidden AppleDouble files (``._*``) are
    ignored. A path to a single audio file gives a one-element list. May return ``[]``.
    """
    folder = os.fspath(Path(folder).expanduser())
    if not os.path.exists(folder):
        raise FileNotFoundError(f"audio folder not found: {folder}")
    if os.path.isfile(folder):
        return [folder] if is_audio_name(os.path.basename(folder), extensions) else []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                     if is_audio_name(f, extensions))
    return sorted(found)


def check_reader(reader):
    """Raise ``ValueError`` (or ``ImportError`` for a missing tensorflow-io) for a bad ``reader``."""
    if reader == "tfio":
        _tfio_module()
    elif reader not in ("soundfile", "memory") and not callable(reader):
        raise ValueError(f"reader must be 'soundfile', 'memory', 'tfio' or a callable, got {reader!r}")


def resample(audio, orig_sr, target_sr, axis=-1):
    """Polyphase resampling (``scipy.signal.resample_poly``) from ``orig_sr`` to ``target_sr``.

    ``n`` input samples become ``ceil(n * target_sr / orig_sr)`` output samples; float32 out.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return audio
    ratio = Fraction(int(target_sr), int(orig_sr))
    out = resample_poly(audio, ratio.numerator, ratio.denominator, axis=axis)
    return np.asarray(out, dtype=np.float32)


def _check_path(path):
    path = os.fspath(Path(path).expanduser())
    if not os.path.exists(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected an audio file, got a folder: {path}")
    return path


def check_finite(data, path):
    """Raise ``AudioDecodeError`` if ``data`` (decoded from ``path``) holds NaN or inf."""
    if not np.all(np.isfinite(data)):
        raise AudioDecodeError(f"audio file {path} contains non-finite samples (NaN or inf)")


def load_audio(path, sample_rate=SAMPLE_RATE, mono=False):
    """Decode a whole audio file to a float32 array of shape ``(channels, samples)``.

    Resampled to ``sample_rate`` (``None`` keeps the file's rate); ``mono=True`` averages the
    channels (shape ``(1, samples)``). Raises ``FileNotFoundError`` for a missing file and
    ``AudioDecodeError`` (a ``ValueError``) for an unreadable or empty file or non-finite samples.
    """
    path = _check_path(path)
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
    if data.size == 0:
        raise AudioDecodeError(f"audio file {path} is empty (no samples)")
    check_finite(data, path)
    data = data.T
    if mono and data.shape[0] > 1:
        data = data.mean(axis=0, keepdims=True)
    if sample_rate is not None:
        data = resample(data, sr, sample_rate)
    return np.ascontiguousarray(data, dtype=np.float32)


class _SoundfileReader:
    """``reader="soundfile"``: reads only the requested part of the file."""

    def __init__(self, path):
        try:
            self._file = sf.SoundFile(path)
        except Exception as e:
            raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
        self.samplerate = self._file.samplerate
        self.frames = self._file.frames

    def read(self, start, frames):
        self._file.seek(start)
        return self._file.read(frames, dtype="float32", always_2d=True).T

    def close(self):
        self._file.close()


class _ArrayReader:
    """Whole-file readers (tfio, a user callable) behind the same interface."""

    def __init__(self, data, samplerate):
        data = np.asarray(data)
        if data.ndim == 1:
            data = data[None, :]
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
        self._data = np.asarray(data, dtype=np.float32)
        self.samplerate = int(samplerate)
        self.frames = self._data.shape[-1]

    def read(self, start, frames):
        return self._data[:, start: start + frames if frames >= 0 else None]

    def close(self):
        pass


def _tfio_module():
    try:
        import tensorflow_io as tfio  # noqa: F401
    except Exception as e:  # ImportError, or its kernels failing to load (NotFoundError)
        raise ImportError(
            "reader='tfio' needs tensorflow-io (pip install tensorflow-io); note that "
            "tensorflow-io 0.37 only loads with a matching tensorflow (2.17), so use "
            f"reader='soundfile' otherwise ({type(e).__name__}: {e})") from e
    return tfio


_TFIO_LOCK = threading.Lock()  # tensorflow-io 0.37 decoding files in parallel threads aborts TensorFlow


def _open_tfio(path):
    tfio = _tfio_module()
    try:
        with _TFIO_LOCK:
            audio = tfio.audio.AudioIOTensor(path)
            data = audio.to_tensor().numpy()  # (samples, channels)
            rate = int(audio.rate.numpy())
    except Exception as e:
        raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
    return _ArrayReader(data.T, rate)


class MemoryReader:
    """``reader="memory"``: each file is decoded once and kept in RAM at its own rate, so crops
    (positions, resampling, NaN checks) are exactly those of ``reader="soundfile"``."""

    def __init__(self):
        self._cache = {}
        self._lock = threading.Lock()

    def __call__(self, path):
        with self._lock:
            cached = self._cache.get(path)
        if cached is None:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            cached = (np.ascontiguousarray(data.T), rate)
            with self._lock:
                self._cache[path] = cached
        return cached


def open_reader(path, reader):
    """An open file behind ``read(start, frames)`` / ``close()`` for ``reader`` (see ``audio_dataset``)."""
    if reader == "soundfile":
        return _SoundfileReader(path)
    if reader == "tfio":
        return _open_tfio(path)
    try:
        data, rate = reader(path)
    except Exception as e:
        raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
    return _ArrayReader(data, rate)
