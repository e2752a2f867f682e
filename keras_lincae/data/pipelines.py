"""Audio loading helpers and two training input pipelines.

``audio_dataset`` builds a ``tf.data`` pipeline (TensorFlow needed, imported lazily);
``audio_batches`` gives the same kind of stream as a plain Python generator of numpy batches,
for machines without TensorFlow. Both work with ``keras.Model.fit`` on every Keras backend.
Audio is decoded with ``soundfile`` (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1), resampled
with ``scipy.signal.resample_poly``; every channel becomes its own mono example.

Typical use::

    from keras_lincae.data import pipelines as data, synth
    root = synth.ensure_default_dataset()
    ds = data.audio_dataset(root / "train", data.clip_samples_for_frames(64), batch_size=8)
    model.fit(ds, steps_per_epoch=1000)
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "AUDIO_EXTENSIONS",
    "MUSDB_STEMS",
    "AudioDecodeError",
    "AudioDecodeWarning",
    "audio_batches",
    "audio_dataset",
    "clip_samples_for_frames",
    "find_musdb_songs",
    "frames_for_clip_samples",
    "list_audio_files",
    "load_audio",
    "load_musdb_song",
    "resample",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MUSDB_STEMS = ("vocals", "bass", "drums", "other")


class AudioDecodeError(ValueError):
    """An audio file exists but cannot be used: unreadable, empty, or with non-finite samples."""


class AudioDecodeWarning(UserWarning):
    """Issued (once per file and dataset) when ``audio_dataset`` skips a file it cannot use."""


# ----------------------------------------------------------------------------------------------
# Clip length helpers
# ----------------------------------------------------------------------------------------------


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


def frames_for_clip_samples(samples, hop=512, n_fft_factor=4):
    """Number of full STFT frames in ``samples`` samples (inverse of ``clip_samples_for_frames``)."""
    n_fft = int(n_fft_factor) * int(hop)
    return max(0, (int(samples) - n_fft) // int(hop) + 1)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def _is_audio(name, extensions=AUDIO_EXTENSIONS):
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
        return [folder] if _is_audio(os.path.basename(folder), extensions) else []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_audio(f, extensions))
    return sorted(found)


def _stem_name(path):
    return os.path.splitext(os.path.basename(path))[0].lower()


def find_musdb_songs(folder):
    """Sorted song folders under ``folder`` in MUSDB18-HQ layout (holding a ``mixture.*`` file)."""
    songs = {os.path.dirname(p) for p in list_audio_files(folder) if _stem_name(p) == "mixture"}
    return sorted(songs)


def load_musdb_song(song_dir, sample_rate=44100, mono=False, stems=MUSDB_STEMS):
    """Load ``mixture`` and ``stems`` of one MUSDB-style song folder: ``{name: (channels, samples)}``.

    Missing stems raise ``FileNotFoundError``; all arrays are cut to the shortest length.
    """
    song_dir = os.fspath(Path(song_dir).expanduser())
    if not os.path.isdir(song_dir):
        raise FileNotFoundError(f"song folder not found: {song_dir}")
    files = {_stem_name(f): os.path.join(song_dir, f) for f in sorted(os.listdir(song_dir))
             if _is_audio(f) and os.path.isfile(os.path.join(song_dir, f))}
    out = {}
    for name in ("mixture", *stems):
        if name not in files:
            raise FileNotFoundError(f"{song_dir} has no {name}.* file (found {sorted(files)})")
        out[name] = load_audio(files[name], sample_rate=sample_rate, mono=mono)
    length = min(a.shape[-1] for a in out.values())
    return {k: v[..., :length] for k, v in out.items()}


def _source_files(folder, musdb_stems):
    """Audio files of one source; in MUSDB-style song folders only the mixture (and chosen stems)."""
    files = list_audio_files(folder)
    songs = {os.path.dirname(p) for p in files if _stem_name(p) == "mixture"}
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
    return [p for p in files if os.path.dirname(p) not in songs or _stem_name(p) in wanted]


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


def resample(audio, orig_sr, target_sr, axis=-1):
    """Polyphase resampling (``scipy.signal.resample_poly``) from ``orig_sr`` to ``target_sr``.

    ``n`` input samples become ``ceil(n * target_sr / orig_sr)`` output samples; float32 out.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return audio
    from scipy.signal import resample_poly

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


def _finite_or_raise(data, path):
    if not np.all(np.isfinite(data)):
        raise AudioDecodeError(f"audio file {path} contains non-finite samples (NaN or inf)")


def load_audio(path, sample_rate=44100, mono=False):
    """Decode a whole audio file to a float32 array of shape ``(channels, samples)``.

    Resampled to ``sample_rate`` (``None`` keeps the file's rate); ``mono=True`` averages the
    channels (shape ``(1, samples)``). Raises ``FileNotFoundError`` for a missing file and
    ``AudioDecodeError`` (a ``ValueError``) for an unreadable or empty file or non-finite samples.
    """
    import soundfile as sf

    path = _check_path(path)
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
    if data.size == 0:
        raise AudioDecodeError(f"audio file {path} is empty (no samples)")
    _finite_or_raise(data, path)
    data = data.T
    if mono and data.shape[0] > 1:
        data = data.mean(axis=0, keepdims=True)
    if sample_rate is not None:
        data = resample(data, sr, sample_rate)
    return np.ascontiguousarray(data, dtype=np.float32)


class _SoundfileReader:
    def __init__(self, path):
        import soundfile as sf

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


def _open_tfio(path):
    tfio = _tfio_module()
    try:
        audio = tfio.audio.AudioIOTensor(path)
        data = audio.to_tensor().numpy()  # (samples, channels)
        rate = int(audio.rate.numpy())
    except Exception as e:
        raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
    return _ArrayReader(data.T, rate)


class _MemoryReader:
    """``reader="memory"``: each file is decoded once and kept in RAM at its own rate, so crops
    (positions, resampling, NaN checks) are exactly those of ``reader="soundfile"``."""

    def __init__(self):
        self._cache = {}
        self._lock = threading.Lock()

    def __call__(self, path):
        with self._lock:
            cached = self._cache.get(path)
        if cached is None:
            import soundfile as sf

            data, rate = sf.read(path, dtype="float32", always_2d=True)
            cached = (np.ascontiguousarray(data.T), rate)
            with self._lock:
                self._cache[path] = cached
        return cached


def _open(path, reader):
    if reader == "soundfile":
        return _SoundfileReader(path)
    if reader == "tfio":
        return _open_tfio(path)
    try:
        data, rate = reader(path)
    except Exception as e:
        raise AudioDecodeError(f"cannot decode audio file {path}: {e}") from e
    return _ArrayReader(data, rate)


def _read_crops(path, rng, clip_samples, crops, sample_rate, reader):
    """``crops`` random crops of every channel of ``path``: float32 ``(crops * channels, clip)``."""
    handle = _open(path, reader)
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
            _finite_or_raise(data, path)
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


def _rms_db(clips):
    return 10.0 * np.log10(np.mean(np.square(clips, dtype=np.float64), axis=-1) + 1e-20)


class _ClipSource:
    """The Python side of one source's ``tf.py_function``: decoding, cropping, silence filter."""

    def __init__(self, name, index, files, clip_samples, crops, sample_rate, silence_rms_db,
                 reader, seed, repeat):
        self.name, self.index, self.files = name, index, files
        self.clip_samples, self.crops, self.sample_rate = clip_samples, crops, sample_rate
        self.silence_rms_db, self.seed, self.repeat = silence_rms_db, seed, repeat
        self.reader = _MemoryReader() if reader == "memory" else reader
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
            clips = _read_crops(path, rng, self.clip_samples, self.crops, self.sample_rate,
                                self.reader)
        except Exception as e:  # never crash the input pipeline on one bad file
            self._report(path, e)
            clips = np.zeros((0, self.clip_samples), np.float32)
        if self.silence_rms_db is not None and len(clips):
            clips = clips[_rms_db(clips) > self.silence_rms_db]
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


# ----------------------------------------------------------------------------------------------
# tf.data pipeline
# ----------------------------------------------------------------------------------------------


def _import_tf():
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            "keras_lincae.data.audio_dataset builds a tf.data pipeline and needs TensorFlow "
            "(pip install tensorflow, or tensorflow-cpu); it works with any Keras backend") from e
    return tf


def _derive_seed(seed, *keys):
    return int(np.random.SeedSequence([int(seed), *keys]).generate_state(1)[0] & 0x7FFFFFFF)


def _clip_sources(sources, clip_samples, batch_size, seed, weights, sample_rate, silence_rms_db,
                  reader, repeat, crops_per_file, musdb_stems):
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
    if reader == "tfio":
        _tfio_module()
    elif reader not in ("soundfile", "memory") and not callable(reader):
        raise ValueError(f"reader must be 'soundfile', 'memory', 'tfio' or a callable, got {reader!r}")
    clip_sources = []
    for index, source in enumerate(sources):
        files = _source_files(source, musdb_stems)
        if not files:
            raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {source}")
        clip_sources.append(_ClipSource(source, index, files, clip_samples, int(crops_per_file),
                                        int(sample_rate), silence_rms_db, reader, int(seed), repeat))
    return clip_sources, weights


def audio_dataset(sources, clip_samples, batch_size, seed=0, weights=None, sample_rate=44100,
                  silence_rms_db=-60.0, reader="soundfile", shuffle_buffer=256, repeat=True,
                  num_parallel_calls=None, crops_per_file=1, musdb_stems=False, shuffle=True,
                  drop_remainder=True, prefetch=True):
    """A ``tf.data.Dataset`` of float32 mono clips shaped ``(batch_size, clip_samples)``.

    Args:
        sources: a folder (or audio file), or a list of them. Folders are searched recursively
            for .wav/.flac/.ogg/.mp3. In MUSDB18(-HQ) style song folders (holding
            ``mixture.*`` and stem files) only the mixture is used, plus the stems chosen by
            ``musdb_stems``.
        clip_samples: samples per clip at ``sample_rate``; see ``clip_samples_for_frames``.
        batch_size: clips per batch.
        seed: one seed fixes file order, crop positions, shuffling and source sampling, so the
            same arguments give the same batches.
        weights: relative sampling weight of each source (several sources only); default equal.
        sample_rate: every file is resampled to this rate (``scipy.signal.resample_poly``).
        silence_rms_db: clips whose RMS is at or below this level (dBFS) are dropped; ``None``
            keeps all.
        reader: ``"soundfile"`` (default; reads only the cropped part of each file),
            ``"memory"`` (decodes each file once and keeps it in RAM: fastest for a small
            collection, e.g. on an accelerator where reading becomes the bottleneck), ``"tfio"``
            (``tensorflow_io.audio``, which must be importable), or a callable
            ``path -> (array (channels, samples) or (samples,), sample_rate)``.
        shuffle_buffer: clips in the shuffle buffer applied after cropping (per source).
        repeat: repeat forever (for ``fit(..., steps_per_epoch=...)``); with ``False`` the dataset
            makes one pass over the files, ``crops_per_file`` crops of each.
        num_parallel_calls: parallel file reads; default ``tf.data.AUTOTUNE``. The order of the
            results stays deterministic.
        crops_per_file: random crops taken each time a file is read (each channel of each crop
            gives one example).
        musdb_stems: in MUSDB-style folders, ``False`` uses the mixture only, ``True`` adds the
            four stems, a list of names adds those stems.
        shuffle: shuffle files and clips (seeded); ``False`` keeps file order.
        drop_remainder: drop a last partial batch (always full batches when ``repeat``).
        prefetch: add ``prefetch(AUTOTUNE)`` at the end.

    Files that cannot be decoded (or are empty, or hold NaN/inf) are skipped with an
    ``AudioDecodeWarning`` naming the file. A source with no audio file raises ``ValueError``,
    and so does (while iterating, with ``repeat``) a source none of whose files gives a usable
    clip: all unreadable, too short or silent.
    """
    clip_sources, weights = _clip_sources(sources, clip_samples, batch_size, seed, weights,
                                          sample_rate, silence_rms_db, reader, repeat,
                                          crops_per_file, musdb_stems)
    clip_samples, batch_size = int(clip_samples), int(batch_size)
    tf = _import_tf()
    if num_parallel_calls is None:
        num_parallel_calls = tf.data.AUTOTUNE

    datasets = []
    for index, clip_source in enumerate(clip_sources):
        ds = tf.data.Dataset.from_tensor_slices(clip_source.files)
        if shuffle:
            ds = ds.shuffle(len(clip_source.files), seed=_derive_seed(seed, index, 1),
                            reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.enumerate()

        def read(element_index, path, clip_source=clip_source):
            clips = tf.py_function(clip_source, [path, element_index], tf.float32)
            clips.set_shape([None, clip_samples])
            return clips

        ds = ds.map(read, num_parallel_calls=num_parallel_calls, deterministic=True)
        ds = ds.unbatch()
        if shuffle and shuffle_buffer and shuffle_buffer > 1:
            ds = ds.shuffle(int(shuffle_buffer), seed=_derive_seed(seed, index, 2),
                            reshuffle_each_iteration=True)
        datasets.append(ds)

    if len(datasets) == 1:
        ds = datasets[0]
    else:
        ds = tf.data.Dataset.sample_from_datasets(
            datasets, weights=weights, seed=_derive_seed(seed, 3), stop_on_empty_dataset=False)
    ds = ds.batch(batch_size, drop_remainder=bool(drop_remainder or repeat))
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


# ----------------------------------------------------------------------------------------------
# Python pipeline (no TensorFlow)
# ----------------------------------------------------------------------------------------------


def _ordered_map(fn, items, workers):
    """``map(fn, items)`` on ``workers`` threads, results in order, at most 2*workers ahead."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _file_reads(clip_source, seed, shuffle, repeat):
    """``(path, element_index)`` of every file read of one source, epoch after epoch."""
    element, epoch = 0, 0
    while True:
        files = list(clip_source.files)
        if shuffle:
            np.random.default_rng([seed, clip_source.index, 1, epoch]).shuffle(files)
        for path in files:
            yield path, element
            element += 1
        if not repeat:
            return
        epoch += 1


def _shuffled(clips, buffer_size, rng):
    """A shuffle buffer of ``buffer_size`` clips over the stream ``clips``."""
    buffer = []
    for clip in clips:
        if len(buffer) < buffer_size:
            buffer.append(clip)
            continue
        i = int(rng.integers(buffer_size))
        yield buffer[i]
        buffer[i] = clip
    rng.shuffle(buffer)
    yield from buffer


def _source_clip_stream(clip_source, seed, shuffle, shuffle_buffer, repeat, workers):
    reads = _ordered_map(lambda item: clip_source.read(*item),
                         _file_reads(clip_source, seed, shuffle, repeat), workers)
    clips = (clip for batch in reads for clip in batch)
    if shuffle and shuffle_buffer and shuffle_buffer > 1:
        clips = _shuffled(clips, int(shuffle_buffer),
                          np.random.default_rng([seed, clip_source.index, 2]))
    return clips


def _batches(streams, weights, batch_size, drop_remainder, skip, rng):
    """Clips drawn from ``streams`` by ``weights`` (zero-weight and exhausted ones dropped),
    stacked in batches, the first ``skip`` batches left out."""
    weights = [1.0] * len(streams) if weights is None else weights
    streams = [s for s, w in zip(streams, weights) if w > 0]
    weights = np.asarray([w for w in weights if w > 0], np.float64)
    batch = []
    while streams:
        k = int(rng.choice(len(streams), p=weights / weights.sum())) if len(streams) > 1 else 0
        try:
            batch.append(next(streams[k]))
        except StopIteration:
            del streams[k]
            weights = np.delete(weights, k)
            continue
        if len(batch) == batch_size:
            if skip:
                skip -= 1
            else:
                yield np.stack(batch)
            batch = []
    if batch and not drop_remainder and not skip:
        yield np.stack(batch)


def _prefetched(iterator, size):
    """Run ``iterator`` in a daemon thread ``size`` items ahead; its errors re-raise here."""
    import queue

    items = queue.Queue(maxsize=size)
    done, stop = object(), threading.Event()

    def put(item):  # False once the consumer has gone
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def fill():
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer
            put(e)
        put(done)

    threading.Thread(target=fill, daemon=True, name="keras_lincae-audio-batches").start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # closed, finished or collected: the filling thread stops too
        stop.set()


def audio_batches(sources, clip_samples, batch_size, seed=0, weights=None, sample_rate=44100,
                  silence_rms_db=-60.0, reader="soundfile", shuffle_buffer=256, repeat=True,
                  num_workers=4, crops_per_file=1, musdb_stems=False, shuffle=True,
                  drop_remainder=True, prefetch=8, skip=0):
    """A Python generator of float32 numpy batches ``(batch_size, clip_samples)``, no TensorFlow.

    Takes ``audio_dataset``'s arguments and gives the same kind of stream (seeded file order,
    crops, per-source shuffle buffers, weighted source sampling, silence filter, skipped
    unreadable files); the exact clips differ from the ``tf.data`` pipeline's for the same seed.
    ``num_workers`` threads read files ahead (results stay in order, so one seed gives one
    stream); ``prefetch`` batches are prepared in a background thread (0: none), which stops
    when the generator is closed; the first ``skip`` batches are drawn and dropped (exact
    resume). Pass it to ``Model.fit`` with ``steps_per_epoch`` when ``repeat``.
    """
    clip_sources, weights = _clip_sources(sources, clip_samples, batch_size, seed, weights,
                                          sample_rate, silence_rms_db, reader, repeat,
                                          crops_per_file, musdb_stems)
    if int(skip) < 0:
        raise ValueError(f"skip must be >= 0 batches, got {skip}")
    seed, workers = int(seed), max(1, int(num_workers))
    streams = [_source_clip_stream(c, seed, shuffle, shuffle_buffer, repeat, workers)
               for c in clip_sources]
    batches = _batches(streams, weights, int(batch_size), bool(drop_remainder or repeat),
                       int(skip), np.random.default_rng([seed, 3]))
    return _prefetched(batches, int(prefetch)) if prefetch else batches
