"""Random clips of audio files: the part both training pipelines share.

A ``ClipSource`` turns the files of one source folder into seeded random crops (every channel
its own mono example), resampled, with silent clips dropped and unreadable files skipped.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from keras_lincae.data.audio_io import (
    AUDIO_EXTENSIONS,
    AudioDecodeError,
    MemoryReader,
    check_finite,
    check_reader,
    list_audio_files,
    open_reader,
    resample,
    rms_db,
)
from keras_lincae.data.songs import MUSDB_STEMS, stem_name


class AudioDecodeWarning(UserWarning):
    """Issued (once per file and dataset) when a pipeline skips a file it cannot use."""


def clip_samples_for_frames(frames, hop=512, n_fft_factor=4):
    """Samples in a clip that gives exactly ``frames`` STFT frames (no centre padding).

    With ``n_fft = n_fft_factor * hop`` that is ``(frames - 1) * hop + n_fft``; e.g. 64 frames at
    the default hop 512 / n_fft 2048 is 34304 samples (about 0.78 s at 44.1 kHz).
    """
    frames, hop, n_fft_factor = int(frames), int(hop), int(n_fft_factor)
    if frames < 1 or hop < 1 or n_fft_factor < 1:
        raise ValueError(f"frames, hop and n_fft_factor must be >= 1, got {frames}, {hop}, "
                         f"{n_fft_factor}")
    return (frames - 1) * hop + n_fft_factor * hop


def source_files(folder, musdb_stems):
    """Audio files of one source; in MUSDB-style song folders only the mixture (and chosen stems)."""
    files = list_audio_files(folder)
    songs = {os.path.dirname(p) for p in files if stem_name(p) == "mixture"}
    if not songs:
        return files
    if isinstance(musdb_stems, str):
        musdb_stems = [musdb_stems]
    if musdb_stems is True:
        wanted = {"mixture", *MUSDB_STEMS}
    elif not musdb_stems:
        wanted = {"mixture"}
    else:
        wanted = {"mixture", *(s.lower() for s in musdb_stems)}
    return [p for p in files if os.path.dirname(p) not in songs or stem_name(p) in wanted]


def read_crops(path, rng, clip_samples, crops, sample_rate, reader):
    """``crops`` random crops of every channel of ``path``: float32 ``(crops * channels, clip)``."""
    handle = open_reader(path, reader)
    try:
        total, sr = int(handle.frames), int(handle.samplerate)
        if total <= 0:
            raise AudioDecodeError(f"audio file {path} is empty (no samples)")
        if sr == sample_rate:
            pad_in, need_in = 0, clip_samples
        else:
            ratio = Fraction(sample_rate, sr)
            up, down = ratio.numerator, ratio.denominator
            pad_in = math.ceil(10 * max(up, down) / up) + 4  # resample_poly's filter half-length
            need_in = math.ceil(clip_samples * sr / sample_rate) + 2 * pad_in
        out = []
        for _ in range(crops):
            if total > need_in:
                start = int(rng.integers(0, total - need_in + 1))
                data = handle.read(start, need_in)
            else:
                start, data = 0, handle.read(0, -1)
            if data.size == 0:
                raise AudioDecodeError(f"audio file {path} is empty (no samples)")
            check_finite(data, path)
            data = resample(data, sr, sample_rate)
            if total > need_in:
                offset = int(round(pad_in * sample_rate / sr))
            else:  # short file, read whole: random crop in the output
                offset = int(rng.integers(0, max(0, data.shape[-1] - clip_samples) + 1))
            data = data[:, offset: offset + clip_samples]
            if data.shape[-1] < clip_samples:
                data = np.pad(data, ((0, 0), (0, clip_samples - data.shape[-1])))
            out.append(data)
        return np.concatenate(out, axis=0).astype(np.float32, copy=False)
    finally:
        handle.close()


class ClipSource:
    """The Python side of one source's ``tf.py_function``: decoding, cropping, silence filter."""

    def __init__(self, name, index, files, clip_samples, crops, sample_rate, silence_rms_db,
                 reader, seed, repeat):
        self.name, self.index, self.files = name, index, files
        self.clip_samples, self.crops, self.sample_rate = clip_samples, crops, sample_rate
        self.silence_rms_db, self.seed, self.repeat = silence_rms_db, seed, repeat
        self.reader = MemoryReader() if reader == "memory" else reader
        self._lock = threading.Lock()
        self._reported = set()
        self._empty_streak = 0
        self._max_empty_streak = max(200, 20 * len(files))

    def _report(self, path, error):
        with self._lock:
            if path in self._reported:
                return
            self._reported.add(path)
        warnings.warn(f"skipping audio file {path}: {error}", AudioDecodeWarning, stacklevel=2)

    def __call__(self, path, element_index):
        """``tf.py_function`` entry: tensors in, clips out."""
        return self.read(path.numpy().decode("utf-8"), int(element_index.numpy()))

    def read(self, path, element_index):
        """Crops of the ``element_index``-th file read of this source: ``(clips, clip_samples)``."""
        rng = np.random.default_rng([self.seed, self.index, int(element_index)])
        try:
            clips = read_crops(path, rng, self.clip_samples, self.crops, self.sample_rate,
                               self.reader)
        except Exception as e:  # never crash the input pipeline on one bad file
            self._report(path, e)
            clips = np.zeros((0, self.clip_samples), np.float32)
        if self.silence_rms_db is not None and len(clips):
            clips = clips[rms_db(clips) > self.silence_rms_db]
        if self.repeat:
            with self._lock:
                self._empty_streak = 0 if len(clips) else self._empty_streak + 1
                stuck = self._empty_streak > self._max_empty_streak
            if stuck:
                raise ValueError(
                    f"audio source {self.name} gave no usable clip in {self._empty_streak} file "
                    f"reads in a row: its files are unreadable, shorter than needed or silent "
                    f"(RMS at or below silence_rms_db={self.silence_rms_db} dBFS; a lower "
                    "threshold, or None, keeps quieter clips)")
        return clips


def make_clip_sources(sources, clip_samples, batch_size, seed, weights, sample_rate,
                      silence_rms_db, reader, repeat, crops_per_file, musdb_stems):
    """Checked arguments of both pipelines: ``(clip_sources, normalised weights)``."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(Path(s).expanduser()) for s in sources]
    if not sources:
        raise ValueError("an audio pipeline needs at least one source folder")
    clip_samples, batch_size = int(clip_samples), int(batch_size)
    if clip_samples < 1 or batch_size < 1 or int(crops_per_file) < 1:
        raise ValueError("clip_samples, batch_size and crops_per_file must be >= 1")
    if weights is not None:
        weights = [float(w) for w in weights]
        if len(weights) != len(sources):
            raise ValueError(f"got {len(weights)} weights for {len(sources)} sources")
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        weights = [w / sum(weights) for w in weights]
    check_reader(reader)
    out = []
    for index, source in enumerate(sources):
        files = source_files(source, musdb_stems)
        if not files:
            raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {source}")
        out.append(ClipSource(source, index, files, clip_samples, int(crops_per_file),
                              int(sample_rate), silence_rms_db, reader, int(seed), repeat))
    return out, weights
