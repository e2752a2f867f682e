"""The Lin-CAE evaluation (METHOD.md section 4) over song folders, as reusable functions.

``recipes/evaluate.py`` and ``recipes/demo_page.py`` are thin wrappers around this module.

Data flow:

1. ``load_clips(folder, target, sample_rate, clip_seconds)``: one mono clip per song of a
   MUSDB18-HQ-style folder (``song/mixture.wav`` plus stem files with any names); the
   accompaniment is the sum of every stem except ``target``. Songs that cannot be scored (no
   target stem, stems of different lengths or rates, a silent clip, ...) are reported as skips.
2. ``ModelFunctions(model, steps, seed)``: the model as two NumPy callables ``encode`` /
   ``decode`` (what ``keras_lincae.evaluation.metrics`` takes), with the same zero padding as
   ``LinCAE.autoencode`` (so reconstructions are sample-aligned), one fixed starting noise
   shared by every clip (so ``decode`` is a deterministic function of the latents, whatever the
   batching), fixed-size chunks (one compiled function per clip length) and a cache that lets
   every metric reuse the same encodes and decodes.
3. ``evaluate_batch(fns, mixture, target, accompaniment)``: every metric per clip, computed by
   ``keras_lincae.evaluation.metrics``; ``evaluate_model`` loops over batches of clips with a progress bar.
4. ``summarize`` (mean and 95 % Student-t interval per metric), ``write_results``
   (``results.md``, ``results.csv``, ``results.json``).

Examples:
```python
from keras_lincae import LinCAE
from keras_lincae import evaluation

clips, skipped = evaluation.load_clips("musdb18hq/test", target="vocals", clip_seconds=10)
model = LinCAE.from_preset("lin_cae")
row = evaluation.evaluate_model(model, clips, name="lin_cae", steps=1, seed=0)
results = evaluation.make_results([row], clips, skipped, config={})
evaluation.write_results(results, "eval_out")
```
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lincae.evaluation import metrics as M

__all__ = [
    "METRIC_GROUPS",
    "MetricSpec",
    "metric_specs",
    "resolve_metrics",
    "Clip",
    "SongSkipped",
    "load_song_clip",
    "find_songs",
    "load_clips",
    "ModelFunctions",
    "ProgressBar",
    "evaluate_batch",
    "evaluate_model",
    "summarize",
    "make_results",
    "format_markdown",
    "format_csv",
    "write_results",
    "model_display_name",
    "load_model",
]

RESULTS_FORMAT = "keras_lincae.evaluation/1"
SILENCE_RMS_DB = -60.0  # a clip whose RMS is at or below this (dBFS) counts as silent
MIN_CLIP_SAMPLES = 2 * max(M.MRSTFT_FFT_SIZES)  # MR-STFT needs more than max(fft) // 2


# ----------------------------------------------------------------------------------------------
# Metric registry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """One table column: machine ``name``, table ``label``, ``group``, direction."""

    name: str
    label: str
    group: str
    higher_is_better: bool | None  # None: no preferred direction

    @property
    def arrow(self):
        return {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]


METRIC_GROUPS = (
    "reconstruction",
    "encoder_homogeneity",
    "decoder_homogeneity",
    "encoder_additivity",
    "decoder_additivity",
    "separation",
    "effective_rank",
    "silence_norm",
)


def _gain_name(gain):
    return f"{float(gain):g}"


def metric_specs(gains: Sequence[float] = M.DEFAULT_GAINS) -> list[MetricSpec]:
    """Every metric column of METHOD section 4, in table order."""
    specs = [
        MetricSpec("recon_mag_snr", "Rec. mag-SNR (dB)", "reconstruction", True),
        MetricSpec("recon_si_sdr", "Rec. SI-SDR (dB)", "reconstruction", True),
        MetricSpec("recon_snr", "Rec. SNR (dB)", "reconstruction", True),
        MetricSpec("recon_mrstft", "Rec. MR-STFT", "reconstruction", False),
    ]
    for g in gains:
        specs.append(MetricSpec(f"enc_homog_{_gain_name(g)}", f"Enc. hom. a={_gain_name(g)}",
                                "encoder_homogeneity", False))
    specs.append(MetricSpec("enc_homog_mean", "Enc. hom. mean", "encoder_homogeneity", False))
    for g in gains:
        specs.append(MetricSpec(f"dec_homog_{_gain_name(g)}", f"Dec. hom. a={_gain_name(g)} (dB)",
                                "decoder_homogeneity", True))
    specs.append(MetricSpec("dec_homog_mean", "Dec. hom. mean (dB)", "decoder_homogeneity", True))
    specs += [
        MetricSpec("enc_add", "Enc. add.", "encoder_additivity", False),
        MetricSpec("dec_add_mrstft", "Dec. add. MR-STFT", "decoder_additivity", False),
        MetricSpec("dec_add_si_sdr", "Dec. add. SI-SDR (dB)", "decoder_additivity", True),
        MetricSpec("sep_si_sdr", "Sep. SI-SDR (dB)", "separation", True),
        MetricSpec("sep_mrstft", "Sep. MR-STFT", "separation", False),
        MetricSpec("eff_rank", "Eff. rank", "effective_rank", None),
        MetricSpec("silence_norm", "Silence latent norm", "silence_norm", False),
    ]
    return specs


def resolve_metrics(selection=None, gains: Sequence[float] = M.DEFAULT_GAINS) -> list[MetricSpec]:
    """The metric columns named by ``selection`` (metric or group names; None or "all": all).

    Raises:
        ValueError: for an unknown name, listing every accepted name.
    """
    specs = metric_specs(gains)
    if selection is None:
        return specs
    if isinstance(selection, str):
        selection = [s for s in selection.replace(",", " ").split() if s]
    wanted = set()
    for item in selection:
        if item == "all":
            wanted.update(s.name for s in specs)
        elif item in METRIC_GROUPS:
            wanted.update(s.name for s in specs if s.group == item)
        elif any(s.name == item for s in specs):
            wanted.add(item)
        else:
            raise ValueError(
                f"unknown metric {item!r}; choose metric names "
                f"({', '.join(s.name for s in specs)}), group names "
                f"({', '.join(METRIC_GROUPS)}) or 'all'")
    if not wanted:
        raise ValueError("no metric selected")
    return [s for s in specs if s.name in wanted]


# ----------------------------------------------------------------------------------------------
# Data: one clip per song
# ----------------------------------------------------------------------------------------------


class SongSkipped(ValueError):
    """A song that cannot be scored; the message says why."""


@dataclass
class Clip:
    """One mono evaluation clip of a song (float32 arrays of equal length).

    ``stems`` holds every stem by name (``target`` and the accompaniment stems).
    """

    song: str
    mixture: np.ndarray
    target: np.ndarray
    accompaniment: np.ndarray
    stems: dict = field(default_factory=dict)
    start_seconds: float = 0.0
    sample_rate: int = 44100

    @property
    def num_samples(self):
        return int(self.mixture.shape[-1])

    @property
    def target_silent(self):
        return _rms_db(self.target) <= SILENCE_RMS_DB


def _rms_db(x):
    return float(10.0 * np.log10(np.mean(np.square(np.asarray(x, np.float64))) + 1e-20))


def _song_files(song_dir):
    from keras_lincae.data import AUDIO_EXTENSIONS

    files = {}
    for name in sorted(os.listdir(song_dir)):
        path = os.path.join(song_dir, name)
        stem, ext = os.path.splitext(name)
        if os.path.isfile(path) and ext.lower() in AUDIO_EXTENSIONS and not name.startswith("._"):
            files.setdefault(stem.lower(), path)
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


def load_song_clip(song_dir, target="vocals", sample_rate=44100, clip_seconds=10.0,
                   clip_start="auto") -> Clip:
    """Load one mono clip of a MUSDB18-HQ-style song folder.

    Args:
        song_dir: folder holding ``mixture.*`` and one file per stem (any names).
        target: str, "vocals". The stem to separate; the accompaniment is the sum of the others.
        sample_rate: int, 44100. Clips are resampled to this rate (the model's).
        clip_seconds: float, 10. Clip length (the whole song if shorter).
        clip_start: "auto" (the window where the target is loudest, on a 1 s grid) or seconds.

    Returns:
        a ``Clip``; channels are averaged to mono.

    Raises:
        SongSkipped: no mixture or target file, no other stem, stems of different sample rates
            or lengths, an unreadable file, a clip too short or silent.
    """
    import soundfile as sf

    from keras_lincae.data import resample

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

    clip_in = min(total, max(1, int(math.ceil(float(clip_seconds) * rate))))
    start = _choose_start(read(target), clip_in, rate, clip_start)
    audio = {}
    for key in ("mixture", target, *others):
        x = read(key, start, clip_in)
        if rate != sample_rate:
            x = resample(x, rate, sample_rate)
        audio[key] = x
    n = min(int(round(clip_in * sample_rate / rate)), *(a.shape[-1] for a in audio.values()))
    audio = {k: np.ascontiguousarray(v[:n], np.float32) for k, v in audio.items()}
    if n < MIN_CLIP_SAMPLES:
        raise SongSkipped(f"clip of {n} samples is too short (need {MIN_CLIP_SAMPLES})")
    if _rms_db(audio["mixture"]) <= SILENCE_RMS_DB:
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


def find_songs(folder):
    """The song folders (holding ``mixture.*``) under ``folder``, sorted.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no song folder in ``folder``.
    """
    from keras_lincae.data import find_musdb_songs

    folder = os.fspath(Path(folder).expanduser())
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    songs = find_musdb_songs(folder)
    if not songs:
        raise ValueError(
            f"no songs found in {folder}: expected MUSDB18-HQ layout, one folder per song "
            "holding mixture.wav (or .flac) and one file per stem")
    return songs


def load_clips(folder, target="vocals", sample_rate=44100, clip_seconds=10.0, max_songs=None,
               clip_start="auto"):
    """One clip per song of ``folder`` (MUSDB18-HQ layout: song folders with ``mixture.*``).

    Returns:
        ``(clips, skipped)``: the clips (sorted by song folder) and a list of
        ``{"song": name, "reason": text}`` for the songs that could not be scored.

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
            clips.append(load_song_clip(song_dir, target, sample_rate, clip_seconds, clip_start))
        except SongSkipped as e:
            skipped.append({"song": os.path.relpath(song_dir, folder), "reason": str(e)})
    if not clips:
        reasons = "; ".join(f"{s['song']}: {s['reason']}" for s in skipped)
        raise ValueError(f"no song in {folder} could be evaluated ({reasons})")
    return clips, skipped


# ----------------------------------------------------------------------------------------------
# The model as NumPy callables
# ----------------------------------------------------------------------------------------------


def _key(tag, x):
    x = np.ascontiguousarray(x)
    return (tag, x.shape, x.dtype.str, hashlib.sha1(x.view(np.uint8)).hexdigest())


class ModelFunctions:
    """A ``LinCAE`` as the NumPy ``encode`` / ``decode`` callables ``keras_lincae.evaluation.metrics`` takes.

    * ``encode(audio (batch, n))`` pads the audio as ``LinCAE.autoencode`` does and returns the
      latents ``(batch, frames, channels)`` as float64;
    * ``decode(latents)`` returns float64 audio starting at the first input sample, at least as
      long as the encoded clip (the metrics trim it to the reference length). Every decode uses
      the same standard-normal starting noise per latent length (drawn with NumPy from ``seed``),
      shared by all batch items, so a clip's decode does not depend on the batch it is in (for
      ``steps > 1`` later noise draws come from ``seed`` per call, as ``LinCAE.decode`` does);
    * calls run in chunks of ``batch_size`` items; on JAX and TensorFlow the last chunk is padded
      with zeros to the full size, so each clip length compiles one function per direction
      (eager PyTorch needs no padding);
    * results are cached by the bytes of their input, and ``prefetch`` computes everything one
      evaluation batch needs in two batched calls (with ``steps=1``);
    * ``affine=True`` measures in coordinates centred on the encoding of silence: ``encode``
      returns ``Enc(x) - Enc(0)`` and ``decode(z)`` decodes ``z + Enc(0)`` (the affine latent
      arithmetic of ``keras_lincae.arithmetic``); reconstructions are unchanged.

    Args:
        model: a ``LinCAE``.
        steps: int, 1. Decoding steps.
        seed: int, 0. Seed of the decoding noise.
        batch_size: int, 8. Items per model call.
        affine: bool, False. Latents relative to ``Enc(silence)``.
    """

    def __init__(self, model, steps=1, seed=0, batch_size=8, affine=False):
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.steps, self.seed, self.batch_size = int(steps), int(seed), int(batch_size)
        self.front = int(model.autoencode_padding(1)[0])
        import keras

        self._pad_chunks = keras.backend.backend() in ("jax", "tensorflow")
        self.affine = bool(affine)
        self._cache = {}
        self._noise = {}
        self._origins = {}
        self.calls = {"encode": 0, "decode": 0}

    @property
    def sample_rate(self):
        return int(self.model.sample_rate)

    def clear_cache(self):
        self._cache.clear()

    # -- raw chunked model calls
    def _chunks(self, x, fn):
        n, b = x.shape[0], self.batch_size
        outs = []
        for i in range(0, n, b):
            part = x[i : i + b]
            pad = b - part.shape[0] if self._pad_chunks else 0
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            y = np.asarray(fn(part))
            outs.append(y[: y.shape[0] - pad])
        return np.concatenate(outs).astype(np.float64)

    def _encode_raw(self, audio):
        import keras

        x = np.asarray(audio, np.float32)
        front, back = self.model.autoencode_padding(x.shape[1])
        x = np.pad(x, ((0, 0), (front, back)))
        self.calls["encode"] += 1
        latents = self._chunks(x, lambda a: keras.ops.convert_to_numpy(self.model.encode(a)))
        return latents - self.origin(latents.shape[1]) if self.affine else latents

    def origin(self, frames):
        """``Enc(silence)`` for ``frames`` latent frames, ``(1, frames, channels)`` float64."""
        if frames not in self._origins:
            import keras

            silence = np.zeros((1, self.model.decoded_length(frames)), np.float32)
            self._origins[frames] = keras.ops.convert_to_numpy(self.model.encode(silence)).astype(np.float64)
        return self._origins[frames]

    def noise(self, frames):
        """The shared starting noise for ``frames`` latent frames: ``(1, ...)`` float32."""
        if frames not in self._noise:
            m = self.model
            shape = (1, frames * m.time_downsampling, 2 * m.hop_size, m.data_channels)
            rng = np.random.default_rng([self.seed, frames])
            self._noise[frames] = rng.standard_normal(shape).astype(np.float32)
        return self._noise[frames]

    def _decode_raw(self, latents):
        import keras

        z = np.asarray(latents + self.origin(latents.shape[1]) if self.affine else latents, np.float32)
        noise = self.noise(int(z.shape[1]))

        def run(part):
            tiled = np.repeat(noise, part.shape[0], axis=0)
            y = self.model.decode(part, steps=self.steps, seed=self.seed, noise=tiled)
            return keras.ops.convert_to_numpy(y)

        self.calls["decode"] += 1
        return self._chunks(z, run)[:, self.front :]

    # -- cached public callables
    def _cached(self, tag, x, raw):
        x = np.asarray(x, np.float64)
        key = _key(tag, x)
        if key not in self._cache:
            self._cache[key] = raw(x)
        return self._cache[key]

    def encode(self, audio):
        return self._cached("encode", audio, self._encode_raw)

    def decode(self, latents):
        return self._cached("decode", latents, self._decode_raw)

    def _fill(self, tag, arrays, raw):
        todo, seen = [], set()
        for a in arrays:
            k = _key(tag, a)
            if k not in self._cache and k not in seen:
                seen.add(k)
                todo.append((k, a))
        if not todo:
            return
        shapes = {a.shape[1:] for _, a in todo}
        if len(shapes) > 1:  # cannot be stacked: one call each
            for k, a in todo:
                self._cache[k] = raw(a)
            return
        out = raw(np.concatenate([a for _, a in todo]))
        i = 0
        for k, a in todo:
            self._cache[k] = out[i : i + a.shape[0]]
            i += a.shape[0]

    def prefetch_encode(self, arrays):
        """Encode several ``(batch, n)`` float64 arrays of one length in one batched call."""
        self._fill("encode", [np.asarray(a, np.float64) for a in arrays], self._encode_raw)

    def prefetch_decode(self, arrays):
        """Decode several latent arrays in one batched call (``steps=1`` only; else no-op)."""
        if self.steps == 1:
            self._fill("decode", [np.asarray(a, np.float64) for a in arrays], self._decode_raw)

    def prefetch(self, mixture, target, accompaniment, gains=M.DEFAULT_GAINS, groups=None):
        """Compute, in two batched calls, the encodes and decodes ``evaluate_batch`` will ask for.

        The arrays are built exactly as ``keras_lincae.evaluation.metrics`` builds them (float64), so the
        metric functions find them in the cache. ``groups``: the metric groups to prepare for
        (default all).
        """
        groups = set(METRIC_GROUPS if groups is None else groups)
        x, u, v = (np.asarray(a, np.float64) for a in (mixture, target, accompaniment))
        g = np.asarray(gains, np.float64).reshape(-1)
        additivity = groups & {"encoder_additivity", "decoder_additivity"}
        enc = [x]
        if "encoder_homogeneity" in groups:
            enc += [a * x for a in g]
        if additivity:
            enc += [u, v, u + v]
        elif "separation" in groups:
            enc += [v]
        self.prefetch_encode(enc)
        z = self.encode(x)
        dec = []
        if groups & {"reconstruction", "decoder_homogeneity"}:
            dec.append(z)
        if "decoder_homogeneity" in groups:
            dec += [a * z for a in g]
        if "decoder_additivity" in groups:
            dec += [self.encode(u) + self.encode(v), self.encode(u + v)]
        if "separation" in groups:
            dec.append(z - self.encode(v))
        self.prefetch_decode(dec)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


class ProgressBar:
    """A plain-text progress bar on stderr (redrawn in place on a terminal, one line per step
    otherwise)."""

    def __init__(self, total, desc="", stream=None, width=24, enabled=True):
        self.total, self.desc, self.width = max(int(total), 1), desc, width
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.count = 0
        self.start = time.perf_counter()
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._draw("")

    def _draw(self, info):
        if not self.enabled:
            return
        done = int(self.width * self.count / self.total)
        bar = "#" * done + "." * (self.width - done)
        line = (f"{self.desc} [{bar}] {self.count}/{self.total} "
                f"{time.perf_counter() - self.start:5.1f}s {info}".rstrip())
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, n=1, info=""):
        self.count = min(self.total, self.count + n)
        self._draw(info)

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _decode_to(decode, z, n):
    y = np.asarray(decode(z), np.float64)
    if y.ndim != 2 or y.shape[1] < n:
        raise ValueError(f"decode returned shape {y.shape}, expected (batch, >= {n})")
    return y[:, :n]


def evaluate_batch(fns, mixture, target, accompaniment, metrics=None,
                   gains: Sequence[float] = M.DEFAULT_GAINS):
    """Every selected metric (except ``silence_norm``) for a batch of equal-length clips.

    Args:
        fns: an object with NumPy ``encode(audio)`` and ``decode(latents)`` methods (e.g.
            ``ModelFunctions``, or any stand-in); an optional ``prefetch`` method is called first.
        mixture, target, accompaniment: ``(batch, samples)``. Additivity uses ``u = target``,
            ``v = accompaniment``; reconstruction and separation use ``mixture``.
        metrics: a list of ``MetricSpec`` or names (default: all).
        gains: the homogeneity gains.

    Returns:
        dict ``name -> (batch,)`` float64; NaN where a metric does not apply (separation of a
        clip whose target is silent).
    """
    specs = resolve_metrics(metrics if metrics is None or isinstance(metrics, str)
                            else [s.name if isinstance(s, MetricSpec) else s for s in metrics],
                            gains)
    groups = {s.group for s in specs}
    wanted = {s.name for s in specs}
    x, u, v = (np.atleast_2d(np.asarray(a, np.float64)) for a in (mixture, target, accompaniment))
    batch, n = x.shape
    encode, decode = fns.encode, fns.decode
    if hasattr(fns, "prefetch"):
        fns.prefetch(x, u, v, gains, groups=groups)
    out = {}
    if "reconstruction" in groups:
        y = _decode_to(decode, encode(x), n)
        out["recon_mag_snr"] = M.magnitude_snr(y, x)
        out["recon_si_sdr"] = M.si_sdr(y, x)
        out["recon_snr"] = M.snr(y, x)
        out["recon_mrstft"] = M.multi_resolution_stft_distance(y, x)
    if "encoder_homogeneity" in groups:
        eh = M.encoder_homogeneity(encode, x, gains)
        for g, row in zip(gains, eh):
            out[f"enc_homog_{_gain_name(g)}"] = row
        out["enc_homog_mean"] = eh.mean(axis=0)
    if "decoder_homogeneity" in groups:
        dh = M.decoder_homogeneity(decode, encode(x), gains, n_samples=n)
        for g, row in zip(gains, dh):
            out[f"dec_homog_{_gain_name(g)}"] = row
        out["dec_homog_mean"] = dh.mean(axis=0)
    if "encoder_additivity" in groups:
        out["enc_add"] = M.encoder_additivity(encode, u, v)
    if "decoder_additivity" in groups:
        da = M.decoder_additivity(encode, decode, u, v)
        out["dec_add_mrstft"], out["dec_add_si_sdr"] = da["mrstft"], da["si_sdr"]
    if "separation" in groups:
        sep_si_sdr, sep_mrstft = np.full(batch, np.nan), np.full(batch, np.nan)
        active = np.array([_rms_db(t) > SILENCE_RMS_DB for t in u])
        if active.all():
            sep = M.separation_by_subtraction(encode, decode, x, v, u)
            sep_si_sdr, sep_mrstft = sep["si_sdr"], sep["mrstft"]
        elif active.any():
            sep = M.separation_by_subtraction(encode, decode, x[active], v[active], u[active])
            sep_si_sdr[active], sep_mrstft[active] = sep["si_sdr"], sep["mrstft"]
        out["sep_si_sdr"], out["sep_mrstft"] = sep_si_sdr, sep_mrstft
    if "effective_rank" in groups:
        z = np.asarray(encode(x), np.float64)
        out["eff_rank"] = np.array([M.effective_rank(z[i]) for i in range(batch)])
    return {k: np.asarray(val, np.float64).reshape(batch) for k, val in out.items() if k in wanted}


def _batches(clips, batch_size):
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


def load_model(preset, cache=None):
    """``LinCAE.from_preset(preset)``, kept in the dict ``cache`` (if given) and reused from it."""
    from keras_lincae import LinCAE

    if cache is None:
        return LinCAE.from_preset(preset)
    if preset not in cache:
        cache[preset] = LinCAE.from_preset(preset)
    return cache[preset]


def model_display_name(preset):
    """A short table name for a preset argument (a built-in name or a folder)."""
    text = os.fspath(preset).rstrip("/")
    return os.path.basename(text) or text


def evaluate_model(model_or_fns, clips, name="model", preset=None, steps=1, seed=0,
                   batch_size=4, call_batch_size=8, metrics=None,
                   gains: Sequence[float] = M.DEFAULT_GAINS, progress=True, clear_cache=True,
                   affine=False):
    """Score one model on ``clips``.

    Args:
        model_or_fns: a ``LinCAE`` (wrapped in ``ModelFunctions(model, steps, seed)``) or an
            object with NumPy ``encode`` / ``decode`` methods.
        clips: list of ``Clip``.
        name: str. The table row name.
        preset: what the model was loaded from (recorded in the results).
        batch_size: int, 4. Clips scored together (their encodes and decodes are stacked).
        call_batch_size: int, 8. Items per model call (see ``ModelFunctions``).
        metrics: metric or group names (default: all).
        progress: bool, True. Draw a progress bar on stderr.
        clear_cache: bool, True. Empty the encode/decode cache after each batch (keep it to
            reuse the results, as the demo page does).
        affine: bool, False. Score latents relative to ``Enc(silence)`` (see ``ModelFunctions``).

    Returns:
        dict with ``name``, ``preset``, ``per_song`` (``metric -> list``, one value per clip,
        None where a metric does not apply), ``summary`` (see ``summarize``), ``notes`` and
        ``seconds``.
    """
    if not clips:
        raise ValueError("no clips to evaluate")
    specs = resolve_metrics(metrics if metrics is None or isinstance(metrics, str)
                            else [s.name if isinstance(s, MetricSpec) else s for s in metrics],
                            gains)
    if hasattr(model_or_fns, "encode") and hasattr(model_or_fns, "autoencode_padding"):
        fns = ModelFunctions(model_or_fns, steps=steps, seed=seed, batch_size=call_batch_size, affine=affine)
    else:
        fns = model_or_fns
    t0 = time.perf_counter()
    per_clip = {s.name: np.full(len(clips), np.nan) for s in specs}
    batches = _batches(clips, max(1, int(batch_size)))
    has_silence = any(s.name == "silence_norm" for s in specs)
    bar = ProgressBar(len(batches) + has_silence, desc=f"evaluate {name}", enabled=progress)
    notes = []
    for idx in batches:
        batch = [clips[i] for i in idx]
        values = evaluate_batch(
            fns,
            np.stack([c.mixture for c in batch]),
            np.stack([c.target for c in batch]),
            np.stack([c.accompaniment for c in batch]),
            metrics=specs, gains=gains)
        for key, val in values.items():
            per_clip[key][idx] = val
        for c in batch:
            if c.target_silent and any(s.group == "separation" for s in specs):
                notes.append(f"{c.song}: target silent in the clip, separation not scored")
        if clear_cache and hasattr(fns, "clear_cache"):
            fns.clear_cache()
        bar.update(1, info=", ".join(c.song for c in batch))
    if has_silence:
        value = M.silence_latent_norm(fns.encode, clips[0].num_samples)
        per_clip["silence_norm"] = np.array([value])
        bar.update(1, info="silence")
    bar.close()
    return {
        "name": name,
        "preset": None if preset is None else os.fspath(preset),
        "per_song": {k: [None if not np.isfinite(x) else float(x) for x in v]
                     for k, v in per_clip.items()},
        "summary": summarize(per_clip),
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def latent_use(model, audio, sigmas=(0.5, 2.0, 10.0), seed=0):
    """Does the decoder use its latents? ``{sigma: (error with the encoder's latents, error with
    all-zero latents)}``: relative L2 error of the decoder's one-step denoising of ``audio``'s
    representation at noise level ``sigma`` (``audio``: one clip, ``(samples,)``)."""
    from keras import ops

    audio = np.asarray(audio, np.float32)[None]
    front, back = model.autoencode_padding(audio.shape[1])
    padded = ops.convert_to_tensor(np.pad(audio, ((0, 0), (front, back))))
    clean = model.frontend.to_representation(padded)
    clean_np = np.asarray(ops.convert_to_numpy(clean))
    latents = model(padded) / model.scale_factor
    pyramids = [model.decoder.latent_pyramid(latents), model.decoder.latent_pyramid(ops.zeros_like(latents))]
    noise = np.random.default_rng(seed).standard_normal(clean_np.shape).astype(np.float32)
    errors = {}
    for sigma in sigmas:
        noisy = clean + sigma * noise
        level = ops.full((1,), sigma)
        errors[sigma] = tuple(
            float(np.linalg.norm(ops.convert_to_numpy(model.decoder.denoise(noisy, level, pyramid)) - clean_np)
                  / np.linalg.norm(clean_np)) for pyramid in pyramids)
    return errors


def summarize(per_clip, confidence=0.95):
    """``metric -> {"mean", "ci95", "n"}`` over the finite values (ci95 None for one value)."""
    out = {}
    for key, values in per_clip.items():
        v = np.asarray([np.nan if x is None else x for x in np.ravel(values)], np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[key] = {"mean": None, "ci95": None, "n": 0}
            continue
        mean, half = M.mean_confidence_interval(v, confidence)
        out[key] = {"mean": float(mean), "ci95": None if not np.isfinite(half) else float(half),
                    "n": int(v.size)}
    return out


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def make_results(rows, clips, skipped, config, gains: Sequence[float] = M.DEFAULT_GAINS,
                 metrics=None):
    """The results document written as ``results.json`` (and the source of the other tables)."""
    import keras

    specs = resolve_metrics(metrics, gains) if metrics is not None else metric_specs(gains)
    present = set().union(*(r["summary"] for r in rows)) if rows else set()
    specs = [s for s in specs if s.name in present]
    return {
        "format": RESULTS_FORMAT,
        "config": dict(config, gains=[float(g) for g in gains],
                       keras_backend=keras.backend.backend(), keras_version=keras.__version__),
        "metrics": [{"name": s.name, "label": s.label, "group": s.group,
                     "higher_is_better": s.higher_is_better} for s in specs],
        "songs": [{"song": c.song, "start_seconds": round(c.start_seconds, 3),
                   "seconds": round(c.num_samples / c.sample_rate, 3),
                   "target_silent": bool(c.target_silent)} for c in clips],
        "skipped": list(skipped),
        "models": list(rows),
    }


MIN_SONGS_FOR_CI = 5  # fewer songs: a t-interval is wider than the effects it would qualify
HEADLINE_METRICS = {
    "recon_mag_snr": "magnitude-spectrogram SNR of the 1-step reconstruction (STFT 2048/512): "
                     "phase-blind, the main reconstruction figure",
    "recon_mrstft": "multi-resolution STFT distance of the reconstruction (official auraloss settings)",
    "recon_si_sdr": "waveform SI-SDR; a consistency decoder invents phase, so it stays low even when "
                    "the reconstruction sounds right",
    "dec_homog_mean": "decoder homogeneity: SNR of Dec(a z) against a Dec(z), mean over gains a",
    "enc_add": "encoder additivity: relative error of Enc(u + v) against Enc(u) + Enc(v)",
    "dec_add_mrstft": "decoder additivity: MR-STFT of Dec(Enc(u) + Enc(v)) against u + v",
    "sep_mrstft": "separation by subtraction: MR-STFT of Dec(z_mix - z_accompaniment) against the target",
}


def _fmt(stat, digits=3):
    if stat is None or stat.get("mean") is None:
        return "n/a"
    mean = f"{stat['mean']:.{digits}f}"
    if stat.get("ci95") is None or stat.get("n", 0) < MIN_SONGS_FOR_CI:
        return mean
    return f"{mean} ± {stat['ci95']:.{digits}f}"


def _arrow(metric):
    return {True: " ↑", False: " ↓", None: ""}[metric["higher_is_better"]]


def table_rows(results, names=None):
    """``(header, rows)`` of the results table (strings): model, songs, one column per metric."""
    metrics = [m for m in results["metrics"] if names is None or m["name"] in names]
    header = ["Model", "Songs"] + [m["label"] + _arrow(m) for m in metrics]
    rows = []
    for r in results["models"]:
        n = max((s["n"] for k, s in r["summary"].items() if k != "silence_norm"), default=0)
        rows.append([r["name"], str(n)] + [_fmt(r["summary"].get(m["name"])) for m in metrics])
    return header, rows


def verdict(results):
    """One line: which model is best on each headline metric (None with fewer than two models)."""
    models = results["models"]
    if len(models) < 2:
        return None
    wins = {r["name"]: [] for r in models}
    for m in results["metrics"]:
        if m["name"] not in HEADLINE_METRICS or m["higher_is_better"] is None:
            continue
        scored = [(r["summary"].get(m["name"], {}).get("mean"), r["name"]) for r in models]
        scored = [(v, name) for v, name in scored if v is not None]
        if scored:
            best = max(scored) if m["higher_is_better"] else min(scored)
            wins[best[1]].append(m["label"])
    total = sum(len(w) for w in wins.values())
    parts = [f"{name} is best on {len(w)} of {total} ({', '.join(w)})" for name, w in wins.items() if w]
    return "Verdict: " + "; ".join(parts) + "."


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def format_markdown(results):
    """``results.md``: headline table, verdict and legend, then every metric, settings and skips."""
    cfg = results["config"]
    lines = ["# Lin-CAE evaluation", ""]
    lines.append(
        f"Data: `{cfg.get('data')}`, target `{cfg.get('target')}`, "
        f"{len(results['songs'])} song(s), clips of up to {cfg.get('clip_seconds')} s "
        f"(start: {cfg.get('clip_start')}), {cfg.get('steps')} decoding step(s), seed "
        f"{cfg.get('seed')}, backend {cfg.get('keras_backend')}"
        + (", latent arithmetic relative to Enc(silence) (affine)" if cfg.get("affine") else "")
        + ". Values are means over songs, "
        f"with a 95 % confidence interval (±) from {MIN_SONGS_FOR_CI} songs on; "
        "↑ higher is better, ↓ lower is better.")
    lines.append("")
    headline = [m for m in HEADLINE_METRICS if any(x["name"] == m for x in results["metrics"])]
    lines += _markdown_table(*table_rows(results, headline))
    line = verdict(results)
    if line:
        lines += ["", line]
    lines += ["", "What the columns mean:", ""]
    labels = {m["name"]: m["label"] for m in results["metrics"]}
    lines += [f"- **{labels[name]}**: {HEADLINE_METRICS[name]}." for name in headline]
    lines += ["", "## Every metric", ""]
    lines += _markdown_table(*table_rows(results))
    lines.append("")
    lines.append("Homogeneity gains a: " + ", ".join(_gain_name(g) for g in cfg["gains"])
                 + ". Encoder homogeneity and additivity are relative L2 errors of latents; "
                 "decoder homogeneity is the SNR of Dec(a z) against a Dec(z); additivity uses "
                 "u = target, v = accompaniment; separation decodes z_mix - z_accompaniment.")
    if results["skipped"]:
        lines += ["", "Skipped songs:", ""]
        lines += [f"- {s['song']}: {s['reason']}" for s in results["skipped"]]
    notes = [n for r in results["models"] for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in sorted(set(notes))]
    return "\n".join(lines) + "\n"


def format_csv(results):
    """``results.csv``: one row per model; per metric ``<name>_mean``, ``_ci95`` and ``_n``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = [m["name"] for m in results["metrics"]]
    writer.writerow(["model", "preset"]
                    + [f"{n}_{s}" for n in names for s in ("mean", "ci95", "n")])
    for r in results["models"]:
        row = [r["name"], r.get("preset") or ""]
        for n in names:
            st = r["summary"].get(n, {})
            row += ["" if st.get("mean") is None else repr(st["mean"]),
                    "" if st.get("ci95") is None else repr(st["ci95"]), st.get("n", 0)]
        writer.writerow(row)
    return buf.getvalue()


def write_results(results, out_dir):
    """Write ``results.md``, ``results.csv`` and ``results.json`` into ``out_dir``; return paths."""
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "results.md", "csv": out_dir / "results.csv",
             "json": out_dir / "results.json"}
    paths["md"].write_text(format_markdown(results), encoding="utf-8")
    paths["csv"].write_text(format_csv(results), encoding="utf-8")
    paths["json"].write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return paths


def load_results(path):
    """Read a ``results.json`` (or the folder holding it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a {RESULTS_FORMAT} results file")
    return results
