"""Songs in MUSDB18-HQ layout: one folder per song holding ``mixture.*`` and one file per stem.

``load_clips`` is the one song loader of the package: the evaluation takes one clip per song
from it, the tuner whole songs (``clip_seconds=None``). Audio is mono float32; the
accompaniment of a ``target`` stem is the sum of every other stem.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from keras_lincae.data.audio_io import SAMPLE_RATE, SILENCE_RMS_DB, is_audio_name, list_audio_files
from keras_lincae.data.audio_io import resample, rms_db

MUSDB_STEMS = ("vocals", "bass", "drums", "other")
CLIP_SECONDS = 10.0  # the length of an evaluation clip


class SongSkipped(ValueError):
    """A song that cannot be used; the message says why."""


@dataclass
class Clip:
    """One mono clip of a song (float32 arrays ``(samples,)`` of equal length).

    ``stems`` holds every stem by name (``target`` and the accompaniment stems).
    """

    song: str
    mixture: np.ndarray
    target: np.ndarray
    accompaniment: np.ndarray
    stems: dict = field(default_factory=dict)
    start_seconds: float = 0.0
    sample_rate: int = SAMPLE_RATE

    @property
    def num_samples(self):
        return int(self.mixture.shape[-1])

    @property
    def target_silent(self):
        return bool(rms_db(self.target) <= SILENCE_RMS_DB)


def stem_name(path):
    """The lower-case file name without extension: ``.../Vocals.wav`` -> ``vocals``."""
    return os.path.splitext(os.path.basename(path))[0].lower()


def find_musdb_songs(folder):
    """Sorted song folders under ``folder`` (searched recursively) holding a ``mixture.*`` file."""
    return sorted({os.path.dirname(p) for p in list_audio_files(folder) if stem_name(p) == "mixture"})


def find_songs(folder):
    """The song folders under ``folder``, sorted.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no song folder in ``folder``.
    """
    folder = os.fspath(Path(folder).expanduser())
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    songs = find_musdb_songs(folder)
    if not songs:
        raise ValueError(
            f"no songs found in {folder}: expected MUSDB18-HQ layout, one folder per song "
            "holding mixture.wav (or .flac) and one file per stem")
    return songs


def _song_files(song_dir):
    files = {}
    for name in sorted(os.listdir(song_dir)):
        path = os.path.join(song_dir, name)
        if os.path.isfile(path) and is_audio_name(name):
            files.setdefault(stem_name(name), path)
    return files


def _choose_start(target, clip, rate, start):
    """Clip start in samples: seconds, or "auto" (where ``target`` is loudest, on a 1 s grid)."""
    total = target.shape[-1]
    if total <= clip:
        return 0
    if start != "auto":
        return int(min(round(float(start) * rate), total - clip))
    energy = np.concatenate([[0.0], np.cumsum(np.square(target, dtype=np.float64))])
    starts = np.arange(0, total - clip + 1, int(rate))
    window = energy[starts + clip] - energy[starts]
    return int(starts[int(np.argmax(window))])


def load_song_clip(song_dir, target="vocals", sample_rate=SAMPLE_RATE,
                   clip_seconds=CLIP_SECONDS, clip_start="auto", min_samples=1) -> Clip:
    """Load one mono clip of a song folder.

    Args:
        song_dir: folder holding ``mixture.*`` and one file per stem (any names).
        target: str, "vocals". The stem to separate; the accompaniment is the sum of the others.
        sample_rate: int, ``SAMPLE_RATE`` (44100). Clips are resampled to this rate (the model's).
        clip_seconds: float, ``CLIP_SECONDS`` (10). Clip length (the whole song if shorter);
            None: the whole song.
        clip_start: "auto" (the window where the target is loudest, on a 1 s grid) or seconds.
        min_samples: int, 1. Shorter clips are skipped.

    Raises:
        SongSkipped: no mixture or target file, no other stem, stems of different sample rates
            or lengths, an unreadable file, a clip too short or a silent mixture.
    """
    song_dir = os.fspath(song_dir)
    files = _song_files(song_dir)
    if "mixture" not in files:
        raise SongSkipped(f"no mixture file (found {sorted(files)})")
    if target not in files:
        raise SongSkipped(f"no {target!r} stem (found {sorted(files)})")
    others = [k for k in files if k not in ("mixture", target)]
    if not others:
        raise SongSkipped(f"no accompaniment stem besides {target!r} (found {sorted(files)})")
    try:
        infos = {k: sf.info(p) for k, p in files.items()}
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, ...
        raise SongSkipped(f"unreadable audio file: {e}") from None
    rates = {k: int(i.samplerate) for k, i in infos.items()}
    if len(set(rates.values())) > 1:
        raise SongSkipped(f"files have different sample rates: {rates}")
    lengths = {k: int(i.frames) for k, i in infos.items()}
    if len(set(lengths.values())) > 1:
        raise SongSkipped(f"files have different lengths (samples): {lengths}")
    rate, total = rates["mixture"], lengths["mixture"]
    if total == 0:
        raise SongSkipped("files are empty")

    def read(key, start=0, frames=-1):
        try:
            data = sf.read(files[key], start=start, frames=frames, dtype="float32",
                           always_2d=True)[0]
        except Exception as e:
            raise SongSkipped(f"cannot decode {os.path.basename(files[key])}: {e}") from None
        if not np.all(np.isfinite(data)):
            raise SongSkipped(f"{os.path.basename(files[key])} holds NaN or inf samples")
        return data.mean(axis=1)

    if clip_seconds is None:
        clip_in, start = total, 0
    else:
        clip_in = min(total, max(1, int(math.ceil(float(clip_seconds) * rate))))
        start = _choose_start(read(target), clip_in, rate, clip_start)
    audio = {}
    for key in ("mixture", target, *others):
        x = read(key, start, clip_in)
        audio[key] = resample(x, rate, sample_rate)
    n = min(int(round(clip_in * sample_rate / rate)), *(a.shape[-1] for a in audio.values()))
    audio = {k: np.ascontiguousarray(v[:n], np.float32) for k, v in audio.items()}
    if n < min_samples:
        raise SongSkipped(f"clip of {n} samples is too short (need {min_samples})")
    if rms_db(audio["mixture"]) <= SILENCE_RMS_DB:
        raise SongSkipped(f"mixture is silent in the clip (RMS <= {SILENCE_RMS_DB:g} dBFS)")
    accompaniment = np.sum([audio[k] for k in others], axis=0, dtype=np.float64).astype(np.float32)
    return Clip(
        song=os.path.basename(os.path.normpath(song_dir)),
        mixture=audio["mixture"],
        target=audio[target],
        accompaniment=accompaniment,
        stems={k: audio[k] for k in (target, *others)},
        start_seconds=start / rate,
        sample_rate=int(sample_rate),
    )


def load_clips(folder, target="vocals", sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS,
               max_songs=None, clip_start="auto", min_samples=1):
    """One clip per song of ``folder`` (see ``load_song_clip`` for the arguments).

    Returns:
        ``(clips, skipped)``: the clips (sorted by song folder) and a list of
        ``{"song": name, "reason": text}`` for the songs that could not be used.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no song folder in ``folder``, or no song could be loaded.
    """
    folder = os.fspath(Path(folder).expanduser())
    songs = find_songs(folder)
    if max_songs is not None:
        if int(max_songs) < 1:
            raise ValueError(f"max_songs must be >= 1, got {max_songs}")
        songs = songs[: int(max_songs)]
    clips, skipped = [], []
    for song_dir in songs:
        try:
            clips.append(load_song_clip(song_dir, target, sample_rate, clip_seconds, clip_start,
                                        min_samples))
        except SongSkipped as e:
            skipped.append({"song": os.path.relpath(song_dir, folder), "reason": str(e)})
    if not clips:
        reasons = "; ".join(f"{s['song']}: {s['reason']}" for s in skipped)
        raise ValueError(f"no song in {folder} could be loaded ({reasons})")
    return clips, skipped


def clip_batches(clips, batch_size):
    """Consecutive runs of at most ``batch_size`` clips of equal length: lists of indices."""
    out, current = [], []
    for i, clip in enumerate(clips):
        if current and (len(current) == batch_size
                        or clips[current[0]].num_samples != clip.num_samples):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out
