"""Scoring presets on song clips (METHOD.md section 4).

``load_clips`` gives one clip per song (``keras_lincae.data.songs``); ``ModelFunctions`` wraps
the model; ``evaluate_batch`` computes every metric for a batch of clips and ``evaluate_model``
loops over all clips with a progress bar; ``keras_lincae.evaluation.report`` writes the tables.

Examples:
```python
from keras_lincae import LinCAE, evaluation

clips, skipped = evaluation.load_clips("musdb18hq/test", target="vocals", clip_seconds=10)
model = LinCAE.from_preset("lin_cae")
row = evaluation.evaluate_model(model, clips, name="lin_cae", steps=1, seed=0)
results = evaluation.make_results([row], clips, skipped, config={})
evaluation.write_results(results, "eval_out")
```
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Sequence

import keras
import numpy as np

from keras_lincae.data import songs
from keras_lincae.data.songs import clip_batches
from keras_lincae.data.audio_io import SAMPLE_RATE, SILENCE_RMS_DB, rms_db
from keras_lincae.evaluation import linearity as L
from keras_lincae.evaluation import metrics as M
from keras_lincae.evaluation.checks import decode_to
from keras_lincae.evaluation.linearity import DEFAULT_GAINS
from keras_lincae.evaluation.model_functions import ModelFunctions
from keras_lincae.evaluation.registry import gain_name, resolve_metrics
from keras_lincae.evaluation.report import RESULTS_FORMAT
from keras_lincae.models.lincae import LinCAE
from keras_lincae.preset_io import resolve_preset

MIN_CLIP_SAMPLES = 2 * max(M.MRSTFT_FFT_SIZES)  # MR-STFT needs more than max(fft) // 2


def load_clips(folder, target="vocals", sample_rate=SAMPLE_RATE, clip_seconds=songs.CLIP_SECONDS,
               max_songs=None, clip_start="auto"):
    """One clip per song of ``folder`` (``keras_lincae.data.load_clips``), songs whose clip is
    shorter than the metrics need (``MIN_CLIP_SAMPLES``) reported as skipped.

    Returns:
        ``(clips, skipped)``: ``Clip`` list and ``{"song", "reason"}`` dicts.
    """
    return songs.load_clips(folder, target, sample_rate, clip_seconds, max_songs, clip_start,
                            min_samples=MIN_CLIP_SAMPLES)


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


def evaluate_batch(fns, mixture, target, accompaniment, metrics=None,
                   gains: Sequence[float] = DEFAULT_GAINS):
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
    specs = resolve_metrics(metrics, gains)
    groups = {s.group for s in specs}
    wanted = {s.name for s in specs}
    x, u, v = (np.atleast_2d(np.asarray(a, np.float64)) for a in (mixture, target, accompaniment))
    batch, n = x.shape
    encode, decode = fns.encode, fns.decode
    if hasattr(fns, "prefetch"):
        fns.prefetch(x, u, v, gains, groups=groups)
    out = {}
    if "reconstruction" in groups:
        y = decode_to(decode, encode(x), n, "decode(latents)")
        out["recon_mag_snr"] = M.magnitude_snr(y, x)
        out["recon_si_sdr"] = M.si_sdr(y, x)
        out["recon_snr"] = M.snr(y, x)
        out["recon_mrstft"] = M.multi_resolution_stft_distance(y, x)
        out["recon_mag_snr_best_gain"] = M.magnitude_snr(y, x, best_gain=True)
        out["recon_level"] = M.level_db(y, x)
    if "encoder_homogeneity" in groups:
        eh = L.encoder_homogeneity(encode, x, gains)
        for g, row in zip(gains, eh):
            out[f"enc_homog_{gain_name(g)}"] = row
        out["enc_homog_mean"] = eh.mean(axis=0)
    if "decoder_homogeneity" in groups:
        dh = L.decoder_homogeneity(decode, encode(x), gains, n_samples=n)
        for g, row in zip(gains, dh):
            out[f"dec_homog_{gain_name(g)}"] = row
        out["dec_homog_mean"] = dh.mean(axis=0)
    if "encoder_additivity" in groups:
        out["enc_add"] = L.encoder_additivity(encode, u, v)
    if "decoder_additivity" in groups:
        da = L.decoder_additivity(encode, decode, u, v)
        out["dec_add_mrstft"], out["dec_add_si_sdr"] = da["mrstft"], da["si_sdr"]
    if "separation" in groups:
        sep_si_sdr, sep_mrstft = np.full(batch, np.nan), np.full(batch, np.nan)
        active = rms_db(u) > SILENCE_RMS_DB
        if active.all():
            sep = L.separation_by_subtraction(encode, decode, x, v, u)
            sep_si_sdr, sep_mrstft = sep["si_sdr"], sep["mrstft"]
        elif active.any():
            sep = L.separation_by_subtraction(encode, decode, x[active], v[active], u[active])
            sep_si_sdr[active], sep_mrstft[active] = sep["si_sdr"], sep["mrstft"]
        out["sep_si_sdr"], out["sep_mrstft"] = sep_si_sdr, sep_mrstft
    if "effective_rank" in groups:
        z = np.asarray(encode(x), np.float64)
        out["eff_rank"] = np.array([L.effective_rank(z[i]) for i in range(batch)])
    return {k: np.asarray(val, np.float64).reshape(batch) for k, val in out.items() if k in wanted}


def load_model(preset, cache=None):
    """``LinCAE.from_preset(preset)``, kept in the dict ``cache`` (if given) and reused from it."""
    if cache is None:
        return LinCAE.from_preset(preset)
    if preset not in cache:
        cache[preset] = LinCAE.from_preset(preset)
    return cache[preset]


def training_summary(preset, name):
    """`name: N training steps in K phase(s), H h, mode M` from a preset's provenance (its
    `metadata.json`), or None where it records no training."""
    folder = resolve_preset(preset)
    path = os.path.join(folder, "metadata.json") if folder else None
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        provenance = json.load(f).get("provenance") or {}
    if not provenance.get("training_steps"):
        return None
    hours = provenance.get("wall_time_hours")
    return (f"{name}: {provenance['training_steps']} training steps in {len(provenance.get('phases', [])) or 1} "
            f"phase(s)" + (f", {hours:.1f} h" if hours else "") + f", mode {provenance.get('training_mode')}")


def model_display_name(preset):
    """A short table name for a preset argument (a built-in name or a folder)."""
    text = os.fspath(preset).rstrip("/")
    return os.path.basename(text) or text


def evaluate_model(model_or_fns, clips, name="model", preset=None, steps=1, seed=0,
                   batch_size=4, call_batch_size=8, metrics=None,
                   gains: Sequence[float] = DEFAULT_GAINS, progress=True, clear_cache=True,
                   affine=False, chunk_seconds=None):
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
        chunk_seconds: float or None. Encode and decode in crossfaded chunks of this span, as
            ``lincae`` does for long audio (see ``ModelFunctions``); None: whole clips.

    Returns:
        dict with ``name``, ``preset``, ``chunk_seconds``, ``per_song`` (``metric -> list``, one
        value per clip, None where a metric does not apply), ``summary`` (see ``summarize``),
        ``notes`` and ``seconds``.
    """
    if not clips:
        raise ValueError("no clips to evaluate")
    specs = resolve_metrics(metrics, gains)
    fns = model_or_fns
    if isinstance(model_or_fns, LinCAE):
        fns = ModelFunctions(model_or_fns, steps=steps, seed=seed, batch_size=call_batch_size,
                             affine=affine, chunk_seconds=chunk_seconds)
    t0 = time.perf_counter()
    per_clip = {s.name: np.full(len(clips), np.nan) for s in specs}
    batches = clip_batches(clips, max(1, int(batch_size)))
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
        value = L.silence_latent_norm(fns.encode, clips[0].num_samples)
        per_clip["silence_norm"] = np.array([value])
        bar.update(1, info="silence")
    bar.close()
    return {
        "name": name,
        "preset": None if preset is None else os.fspath(preset),
        "chunk_seconds": chunk_seconds,
        "per_song": {k: [None if not np.isfinite(x) else float(x) for x in v]
                     for k, v in per_clip.items()},
        "summary": summarize(per_clip),
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3),
    }


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


def make_results(rows, clips, skipped, config, gains: Sequence[float] = DEFAULT_GAINS,
                 metrics=None):
    """The results document written as ``results.json`` (and the source of the other tables)."""
    specs = resolve_metrics(metrics, gains)
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
