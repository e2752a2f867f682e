"""The two training input pipelines: ``tf.data`` (``audio_dataset``) and plain Python
(``audio_batches``, no TensorFlow). Both give float32 mono clips ``(batch, clip_samples)`` and
work with ``keras.Model.fit`` on every Keras backend.

Typical use::

    from keras_lincae import data
    from keras_lincae.data import synth
    root = synth.ensure_default_dataset()
    ds = data.audio_dataset(root / "train", data.clip_samples_for_frames(64), batch_size=8)
    model.fit(ds, steps_per_epoch=1000)
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_lincae.data.audio_io import SAMPLE_RATE, SILENCE_RMS_DB
from keras_lincae.data.clips import make_clip_sources


def _import_tf():
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            "keras_lincae.data.audio_dataset builds a tf.data pipeline and needs TensorFlow "
            "(pip install tensorflow, or tensorflow-cpu); it works with any Keras backend") from e
    return tf


def _derive_seed(seed, *keys):
    """A 31-bit seed for ``tf.data`` from ``seed`` and ``keys``."""
    return int(np.random.SeedSequence([int(seed), *keys]).generate_state(1)[0] & 0x7FFFFFFF)


def audio_dataset(sources, clip_samples, batch_size, seed=0, weights=None, sample_rate=SAMPLE_RATE,
                  silence_rms_db=SILENCE_RMS_DB, reader="soundfile", shuffle_buffer=256,
                  repeat=True, num_parallel_calls=None, crops_per_file=1, musdb_stems=False,
                  shuffle=True, drop_remainder=True, prefetch=True):
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
    clip_sources, weights = make_clip_sources(
        sources, clip_samples, batch_size, seed, weights, sample_rate, silence_rms_db, reader,
        repeat, crops_per_file, musdb_stems)
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


def _ordered_map(fn, items, workers):
    """``map(fn, items)`` on ``workers`` threads, results in order, at most 2*workers ahead."""
    if workers <= 1:
        yield from map(fn, items)
        return
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


def audio_batches(sources, clip_samples, batch_size, seed=0, weights=None, sample_rate=SAMPLE_RATE,
                  silence_rms_db=SILENCE_RMS_DB, reader="soundfile", shuffle_buffer=256,
                  repeat=True, num_workers=4, crops_per_file=1, musdb_stems=False, shuffle=True,
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
    clip_sources, weights = make_clip_sources(
        sources, clip_samples, batch_size, seed, weights, sample_rate, silence_rms_db, reader,
        repeat, crops_per_file, musdb_stems)
    if int(skip) < 0:
        raise ValueError(f"skip must be >= 0 batches, got {skip}")
    seed, workers = int(seed), max(1, int(num_workers))
    streams = [_source_clip_stream(c, seed, shuffle, shuffle_buffer, repeat, workers)
               for c in clip_sources]
    batches = _batches(streams, weights, int(batch_size), bool(drop_remainder or repeat),
                       int(skip), np.random.default_rng([seed, 3]))
    return _prefetched(batches, int(prefetch)) if prefetch else batches
