"""A small, deterministic synthetic music dataset, generated on first use (no downloads).

Songs are synthesised in pure numpy from a seeded random generator: a random key, mode and
tempo per song, a four-chord progression, and four stems laid out like MUSDB18-HQ:

- ``vocals``: a lead melody with vibrato and vowel formants (additive synthesis);
- ``bass``: plucked root notes with decaying harmonics;
- ``drums``: kick drum sine sweeps, noisy snares and hi-hats;
- ``other``: sustained chords with harmonic partials, slight detuning and ADSR envelopes.

``make_synthetic_dataset`` writes ``root/<split>/<song>/{mixture,vocals,bass,drums,other}.wav``
(mono, 32-bit float WAV) for the ``train`` and ``test`` splits; the mixture is exactly the sum of
the stems as written (float32), peak-normalised to 0.9 with every stem scaled by the same factor.

If ``fluidsynth`` and a General MIDI soundfont are installed, ``renderer="fluidsynth"`` renders
the same notes with real sampled instruments instead (``keras_lincae.data.fluidsynth``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from keras_lincae.data.audio_io import SAMPLE_RATE
from keras_lincae.data.fluidsynth import SOUNDFONT_PATHS, fluidsynth_available, render_fluidsynth
from keras_lincae.fs import cache_root, give_usual_mode

__all__ = [
    "STEMS",
    "DATASET_VERSION",
    "default_dataset_dir",
    "ensure_default_dataset",
    "generate_song",
    "make_synthetic_dataset",
    "midi_to_hz",
]

STEMS = ("vocals", "bass", "drums", "other")
DATASET_VERSION = 1
MANIFEST_NAME = "synthetic_dataset.json"
RENDERERS = ("auto", "numpy", "fluidsynth")

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale-degree indices (0 = tonic).
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 3, 0, 4), (0, 5, 1, 4))
# Vowel formants (Hz) and relative gains, roughly those of a singing voice.
_VOWELS = (
    ((800.0, 1150.0, 2900.0), (1.0, 0.5, 0.15)),  # a
    ((400.0, 1600.0, 2700.0), (1.0, 0.35, 0.2)),  # e
    ((300.0, 2000.0, 2900.0), (1.0, 0.25, 0.2)),  # i
    ((450.0, 800.0, 2830.0), (1.0, 0.6, 0.1)),  # o
    ((325.0, 700.0, 2530.0), (1.0, 0.3, 0.08)),  # u
)
# General MIDI programs (0-based) and drum keys for the fluidsynth renderer.
_KICK, _SNARE, _HAT = 36, 38, 42
# Target RMS of each stem before mixing (relative), then a random gain per song.
_STEM_LEVELS = {"vocals": 0.12, "bass": 0.12, "drums": 0.14, "other": 0.08}


def midi_to_hz(note):
    """Frequency in Hz of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


# ----------------------------------------------------------------------------------------------
# Score: notes as (start_seconds, duration_seconds, midi_note, velocity 0..1) per stem.
# ----------------------------------------------------------------------------------------------


def _compose(rng, seconds):
    root = int(rng.integers(38, 50))  # bass-octave tonic, E2..C#3
    mode = "major" if rng.random() < 0.5 else "minor"
    scale = _MAJOR if mode == "major" else _MINOR
    tempo = float(rng.uniform(80.0, 140.0))
    beat = 60.0 / tempo
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    n_bars = int(np.ceil(seconds / (4 * beat)))

    def degree_to_midi(degree, octave_offset):
        octave, index = divmod(degree, 7)
        return root + 12 * (octave + octave_offset) + scale[index]

    score = {name: [] for name in STEMS}
    chord_tones_per_bar = []
    for bar in range(n_bars):
        t0 = bar * 4 * beat
        degree = progression[bar % len(progression)]
        triad = [degree, degree + 2, degree + 4]
        if rng.random() < 0.3:
            triad.append(degree + 6)
        chord = [degree_to_midi(d, 1) for d in triad]
        chord_tones_per_bar.append(triad)
        # other: one or two chord hits per bar, sustained
        if rng.random() < 0.5:
            hits = [(0.0, 4.0)]
        else:
            hits = [(0.0, 2.0), (2.0, 2.0)]
        for start, length in hits:
            velocity = float(rng.uniform(0.55, 0.8))
            for note in chord:
                score["other"].append((t0 + start * beat, length * beat * 0.95, note, velocity))
        # bass: root (sometimes fifth) on a simple rhythm
        pattern = ((0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 0.5), (3.5, 0.5))
        if rng.random() < 0.5:
            pattern = ((0.0, 1.5), (1.5, 0.5), (2.0, 1.5), (3.5, 0.5))
        for start, length in pattern:
            note = degree_to_midi(degree, 0)
            if start in (1.5, 3.5) and rng.random() < 0.5:
                note = degree_to_midi(degree + 4, 0)
            score["bass"].append((t0 + start * beat, length * beat * 0.9, note,
                                  float(rng.uniform(0.7, 0.95))))
        # drums: kick on 1 and 3 (plus an optional pickup), snare on 2 and 4, hats on eighths
        for step in range(8):
            t = t0 + step * beat / 2
            if step in (0, 4) or (step == 5 and rng.random() < 0.35):
                score["drums"].append((t, 0.35, _KICK, float(rng.uniform(0.85, 1.0))))
            if step in (2, 6):
                score["drums"].append((t, 0.25, _SNARE, float(rng.uniform(0.75, 0.95))))
            if rng.random() < 0.9:
                score["drums"].append((t, 0.08, _HAT, float(rng.uniform(0.3, 0.6))))

    # vocals: a random walk over the scale, pulled towards chord tones on strong beats
    degree = 7 + int(rng.integers(0, 5))
    t = 0.0
    total = n_bars * 4 * beat
    while t < total:
        length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.random() < 0.15:  # rest
            t += length * beat
            continue
        bar = min(int(t // (4 * beat)), n_bars - 1)
        degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
        degree = int(np.clip(degree, 5, 14))
        on_strong_beat = abs((t / beat) % 2.0) < 1e-6
        if on_strong_beat and rng.random() < 0.7:
            tones = [d + 7 * k for d in chord_tones_per_bar[bar] for k in (0, 1, 2)]
            degree = min(tones, key=lambda d: abs(d - degree))
        note = degree_to_midi(degree, 1)
        score["vocals"].append((t, length * beat * 0.92, note, float(rng.uniform(0.6, 0.9))))
        t += length * beat

    info = {"root": root, "mode": mode, "tempo": tempo, "progression": list(progression)}
    return score, info


# ----------------------------------------------------------------------------------------------
# numpy renderer
# ----------------------------------------------------------------------------------------------


def _adsr(n_on, sample_rate, attack, decay, sustain, release):
    """Envelope for a note held n_on samples, followed by a release tail."""
    a = max(1, int(attack * sample_rate))
    d = max(1, int(decay * sample_rate))
    r = max(1, int(release * sample_rate))
    env = np.concatenate([
        np.linspace(0.0, 1.0, a, endpoint=False),
        np.linspace(1.0, sustain, d, endpoint=False),
        np.full(max(0, n_on - a - d), sustain),
    ])[:n_on]
    level = env[-1] if n_on > 0 else 0.0
    return np.concatenate([env, np.linspace(level, 0.0, r)])


def _add(out, start, signal):
    i = int(round(start))
    if i >= len(out):
        return
    signal = signal[: len(out) - i]
    out[i: i + len(signal)] += signal


def _clip_env(env, start, n, sr):
    """The part of a note's envelope that falls inside the song (None when none does)."""
    room = n - int(round(start * sr))
    return env[:room] if room > 0 else None


def _render_vocals(notes, n, sr, rng):
    out = np.zeros(n)
    vib_rate = rng.uniform(4.8, 6.2)
    vib_depth = rng.uniform(0.2, 0.45)  # semitones
    for start, dur, note, vel in notes:
        env = _adsr(int(dur * sr), sr, 0.04, 0.12, 0.8, 0.08)
        env = _clip_env(env, start, n, sr)
        if env is None:
            continue
        t = np.arange(len(env)) / sr
        onset = np.clip((t - 0.12) / 0.25, 0.0, 1.0)  # vibrato fades in after the attack
        semis = vib_depth * onset * np.sin(2 * np.pi * vib_rate * t + rng.uniform(0, 2 * np.pi))
        semis += 0.1 * np.exp(-t / 0.05) * rng.choice([-1.0, 1.0])  # small scoop into the note
        f0 = midi_to_hz(note) * 2.0 ** (semis / 12.0)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        formants, gains = _VOWELS[int(rng.integers(len(_VOWELS)))]
        k = np.arange(1, max(2, min(40, int(0.45 * sr / f0.max()))) + 1)
        fk = k * midi_to_hz(note)
        amps = sum(g * np.exp(-0.5 * ((fk - f) / (80.0 + 0.06 * f)) ** 2)
                   for f, g in zip(formants, gains))
        amps = amps + 0.08 / k  # glottal tilt
        wave = amps @ np.sin(np.outer(k, phase) + rng.uniform(0, 2 * np.pi, size=(len(k), 1)))
        breath = rng.standard_normal(len(env)) * 0.01
        _add(out, start * sr, vel * env * (wave / amps.sum() + breath))
    return out


def _render_bass(notes, n, sr, rng):
    out = np.zeros(n)
    brightness = rng.uniform(1.0, 2.0)
    for start, dur, note, vel in notes:
        env = _adsr(int(dur * sr), sr, 0.004, 0.2, 0.6, 0.05)
        env = _clip_env(env, start, n, sr)
        if env is None:
            continue
        t = np.arange(len(env)) / sr
        f0 = midi_to_hz(note)
        k = np.arange(1, 11)
        k = k[k * f0 < 0.45 * sr]
        decays = np.exp(-np.outer(2.0 + brightness * k, t))
        partials = np.sin(2 * np.pi * np.outer(k * f0, t)) * decays / k[:, None] ** 1.5
        _add(out, start * sr, vel * env * partials.sum(axis=0))
    return out


def _render_drums(hits, n, sr, rng):
    out = np.zeros(n)
    for start, dur, key, vel in hits:
        m = min(int(dur * sr), n - int(round(start * sr)))
        if m <= 0:
            continue
        t = np.arange(m) / sr
        if key == _KICK:
            freq = 48.0 + 110.0 * np.exp(-t / 0.035)
            body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.22)
            click = rng.standard_normal(m) * np.exp(-t / 0.004) * 0.3
            sig = body + click
        elif key == _SNARE:
            noise = rng.standard_normal(m)
            noise = noise - np.concatenate([[0.0], noise[:-1]]) * 0.5  # tilt towards highs
            sig = 0.6 * noise * np.exp(-t / 0.09) + 0.5 * np.sin(2 * np.pi * 185.0 * t) * np.exp(-t / 0.06)
        else:  # hi-hat: high-passed noise, short decay
            noise = rng.standard_normal(m + 1)
            sig = 0.5 * np.diff(noise) * np.exp(-t / 0.025)
        _add(out, start * sr, vel * sig)
    return out


def _render_other(notes, n, sr, rng):
    out = np.zeros(n)
    partial_decay = rng.uniform(0.25, 0.6)
    detune = 2.0 ** (rng.uniform(2.0, 6.0) / 1200.0)  # a few cents
    for start, dur, note, vel in notes:
        env = _adsr(int(dur * sr), sr, 0.06, 0.35, 0.6, 0.35)
        env = _clip_env(env, start, n, sr)
        if env is None:
            continue
        t = np.arange(len(env)) / sr
        f0 = midi_to_hz(note)
        k = np.arange(1, 9)
        k = k[k * f0 * detune < 0.45 * sr]
        amps = np.exp(-partial_decay * (k - 1)) / k
        wave = np.zeros(len(t))
        for ratio in (1.0 / detune, detune):
            phases = rng.uniform(0, 2 * np.pi, size=(len(k), 1))
            wave += amps @ np.sin(2 * np.pi * np.outer(k * f0 * ratio, t) + phases)
        _add(out, start * sr, vel * env * wave / (2 * amps.sum()))
    return out


_NUMPY_RENDERERS = {
    "vocals": _render_vocals,
    "bass": _render_bass,
    "drums": _render_drums,
    "other": _render_other,
}


# ----------------------------------------------------------------------------------------------
# Songs and datasets
# ----------------------------------------------------------------------------------------------


def _resolve_renderer(renderer, soundfont=None):
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
    tools = fluidsynth_available(soundfont)
    if renderer == "fluidsynth" and tools is None:
        raise RuntimeError(
            "renderer='fluidsynth' needs the fluidsynth program and a General MIDI soundfont "
            f"(one of {', '.join(SOUNDFONT_PATHS)} or $KERAS_LINCAE_SOUNDFONT); on Debian/Ubuntu: "
            "apt-get install fluidsynth fluid-soundfont-gm. Use renderer='numpy' otherwise.")
    if renderer == "auto":
        renderer = "fluidsynth" if tools is not None else "numpy"
    return renderer, tools


def generate_song(seed, seconds=6.0, sample_rate=SAMPLE_RATE, renderer="numpy", soundfont=None):
    """Synthesise one song; returns ``(stems, info)``.

    ``stems`` maps each of ``STEMS`` and ``"mixture"`` to a float32 array of
    ``round(seconds * sample_rate)`` samples; the mixture is the float32 sum of the stems
    (in ``STEMS`` order) and its peak is 0.9. ``seed`` is anything ``np.random.default_rng``
    accepts; the same seed gives the same song.
    """
    renderer, tools = _resolve_renderer(renderer, soundfont)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    if n <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    score, info = _compose(rng, seconds)
    raw = {}
    if renderer == "numpy":
        for name in STEMS:
            stem_rng = np.random.default_rng([int(rng.integers(2**31)), STEMS.index(name)])
            raw[name] = _NUMPY_RENDERERS[name](score[name], n, sample_rate, stem_rng)
    else:
        with tempfile.TemporaryDirectory(prefix="lincae_fluidsynth_") as workdir:
            for name in STEMS:
                raw[name] = render_fluidsynth(name, score[name], n, sample_rate, info["tempo"],
                                               tools, workdir)
    gains = {}
    for name in STEMS:
        rms = float(np.sqrt(np.mean(raw[name] ** 2)))
        gains[name] = _STEM_LEVELS[name] * float(rng.uniform(0.6, 1.4)) / max(rms, 1e-9)
        raw[name] = raw[name] * gains[name]
    peak = float(np.max(np.abs(sum(raw[name] for name in STEMS))))
    scale = 0.9 / max(peak, 1e-9)
    stems = {name: (raw[name] * scale).astype(np.float32) for name in STEMS}
    mixture = np.zeros(n, dtype=np.float32)
    for name in STEMS:
        mixture = mixture + stems[name]
    stems["mixture"] = mixture
    info = dict(info, renderer=renderer, seconds=float(seconds), sample_rate=int(sample_rate))
    return stems, info


def _song_seed(seed, split, index):
    return [int(seed), {"train": 0, "test": 1}[split], int(index)]


def _manifest_params(num_songs, num_test_songs, seconds, seed, sample_rate):
    return {"version": DATASET_VERSION, "num_songs": int(num_songs),
            "num_test_songs": int(num_test_songs), "seconds": float(seconds), "seed": int(seed),
            "sample_rate": int(sample_rate)}


def _read_manifest(root):
    try:
        with open(os.path.join(root, MANIFEST_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _matches(manifest, params, renderer):
    if manifest is None:
        return False
    if any(manifest.get(k) != v for k, v in params.items()):
        return False
    return renderer == "auto" or manifest.get("renderer") == renderer


def make_synthetic_dataset(root, num_songs=8, seconds=6.0, seed=0, sample_rate=SAMPLE_RATE,
                           num_test_songs=None, renderer="auto", soundfont=None, progress=None):
    """Write a MUSDB18-HQ-style synthetic dataset under ``root`` and return ``root`` (a Path).

    Layout: ``root/train/song_000/{mixture,vocals,bass,drums,other}.wav`` (``num_songs`` songs)
    and ``root/test/song_000/...`` (``num_test_songs`` held-out songs, default
    ``max(1, num_songs // 4)``, generated from different seeds), mono 32-bit float WAV, plus a
    ``synthetic_dataset.json`` manifest. Each song gets its own key, mode and tempo.

    Idempotent: if ``root`` already holds a dataset made with the same arguments, nothing is
    written. Atomic: songs are written into a temporary folder beside ``root`` that is renamed
    to ``root`` at the end, so an interrupted run leaves no partial dataset. A non-empty ``root``
    that is not such a dataset raises ``FileExistsError``.

    ``renderer``: ``"numpy"`` (pure numpy, bit-for-bit reproducible from ``seed``),
    ``"fluidsynth"`` (renders the songs' MIDI with fluidsynth and a General MIDI soundfont,
    which must be installed), or ``"auto"``: fluidsynth when available, numpy otherwise.
    ``progress``: optional callable receiving a one-line message per generated song.
    """
    root = Path(root).expanduser()
    if num_test_songs is None:
        num_test_songs = max(1, num_songs // 4)
    if num_songs < 1 or num_test_songs < 0:
        raise ValueError("num_songs must be >= 1 and num_test_songs >= 0")
    params = _manifest_params(num_songs, num_test_songs, seconds, seed, sample_rate)
    if _matches(_read_manifest(root), params, renderer):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists and is not a synthetic dataset made with these arguments "
            f"({params}, renderer={renderer!r}); remove it or choose another root")
    resolved, _ = _resolve_renderer(renderer, soundfont)

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    give_usual_mode(tmp)
    try:
        songs = {}
        for split, count in (("train", num_songs), ("test", num_test_songs)):
            songs[split] = []
            for index in range(count):
                name = f"song_{index:03d}"
                if progress is not None:
                    progress(f"{root.name}: {split} song {index + 1}/{count} ({resolved})")
                stems, info = generate_song(_song_seed(seed, split, index), seconds,
                                            sample_rate, resolved, soundfont)
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for stem, audio in stems.items():
                    sf.write(str(folder / f"{stem}.wav"), audio, sample_rate, subtype="FLOAT")
                songs[split].append(dict(info, name=name))
        manifest = dict(params, renderer=resolved, stems=list(STEMS), songs=songs)
        with open(tmp / MANIFEST_NAME, "w") as f:
            json.dump(manifest, f, indent=1)
        if root.exists():
            try:
                root.rmdir()  # empty (checked above)
            except OSError:
                pass
        try:
            os.rename(tmp, root)
        except OSError:
            # Someone else finished first: accept theirs if it matches.
            if _matches(_read_manifest(root), params, renderer):
                return root
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def default_dataset_dir():
    """Cache folder of the default dataset: ``$KERAS_LINCAE_CACHE/synthetic_v1`` if that
    variable is set, else ``~/.cache/keras_lincae/synthetic_v1``."""
    return cache_root() / f"synthetic_v{DATASET_VERSION}"


def ensure_default_dataset(**kwargs):
    """Create the default synthetic dataset in ``default_dataset_dir()`` if absent; return its root.

    Keyword arguments go to ``make_synthetic_dataset`` (defaults: 8 training songs and 2 test
    songs of 6 seconds, seed 0, 44.1 kHz, ``renderer="auto"``).
    """
    return make_synthetic_dataset(default_dataset_dir(), **kwargs)

