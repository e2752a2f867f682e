"""The offline music collection the shipped small presets were trained on.

Three kinds of music that exist on a machine without internet:

- ``synth_numpy``: the embedded numpy synthesiser (`keras_lincae.data.synth`), MUSDB-style songs
  with stems;
- ``synth_fluidsynth``: the same generated scores rendered by fluidsynth with the Debian
  General MIDI soundfont (`apt-get install fluidsynth fluid-soundfont-gm`), with stems;
- ``recorded``: recorded game music shipped by Debian (`apt-get install drascula-music
  planetblupi-music-ogg`), linked into ``recorded/train`` and ``recorded/test``;
- ``recorded_mixes`` (test only): MUSDB-style songs made of two held-out recorded tracks,
  ``lead`` + ``backing`` = ``mixture``, so that additivity and separation by subtraction can be
  scored on recorded music (`recipes/evaluate.py --target lead`);
- ``orchestral_mixes`` (test only, when `wesnoth-1.16-music` is installed): the same mixes
  made of recorded orchestral music, a style and instrumentation unlike any training data.

Every kind has a ``train`` and a ``test`` split; test songs are never used for training
(synthetic test songs come from other seeds, recorded test tracks are whole held-out files).
"""

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from keras_lincae.data.audio_io import SAMPLE_RATE, load_audio
from keras_lincae.data.fluidsynth import fluidsynth_available
from keras_lincae.data.synth import make_synthetic_dataset
from keras_lincae.fs import cache_root

RECORDED_SOURCES = ("/usr/share/scummvm/drascula/audio", "/usr/share/planetblupi/music")
# Held-out music unlike the training data (orchestral, recorded): `apt-get install wesnoth-1.16-music`.
UNLIKE_SOURCES = ("/usr/share/games/wesnoth/1.16/data/core/music",)
UNLIKE_TRACKS = 8
MANIFEST_NAME = "music_dataset.json"
TEST_EVERY = 5  # every 5th recorded track (sorted by path) is held out


def default_music_dataset_dir():
    """``$KERAS_LINCAE_CACHE/music_v1`` (default ``~/.cache/keras_lincae/music_v1``)."""
    return cache_root() / "music_v1"


def recorded_tracks(sources=RECORDED_SOURCES):
    """Sorted `.ogg` tracks found in the Debian game-music folders (may be empty)."""
    tracks = []
    for folder in sources:
        if os.path.isdir(folder):
            tracks += [os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".ogg")]
    return sorted(tracks)


def split_recorded(tracks, test_every=TEST_EVERY):
    """`(train, test)`: every `test_every`-th track (from the first) is held out."""
    test = tracks[::test_every]
    return [t for t in tracks if t not in test], test


def _link_tracks(folder, tracks):
    folder.mkdir(parents=True, exist_ok=True)
    for track in tracks:
        name = f"{Path(track).parent.name}_{Path(track).name}"
        link = folder / name
        if not link.exists():
            tmp = folder / f".{name}.tmp"
            if tmp.is_symlink():
                tmp.unlink()
            tmp.symlink_to(track)
            os.replace(tmp, link)


def _write_recorded_mixes(folder, tracks, seconds, sample_rate=SAMPLE_RATE, offset_seconds=20.0):
    """Pair held-out track i with track i+1 into ``folder/mix_XXX/{mixture,lead,backing}.wav``."""
    n = int(round(seconds * sample_rate))
    segments = []
    for track in tracks:
        audio = load_audio(track, sample_rate=sample_rate, mono=True)[0]
        if audio.shape[-1] < n:
            continue
        start = min(int(offset_seconds * sample_rate), audio.shape[-1] - n)
        segment = audio[start:start + n].astype(np.float64)
        segments.append(segment / max(np.sqrt(np.mean(segment**2)), 1e-6) * 0.1)  # -20 dBFS
    for index in range(len(segments) if len(segments) > 2 else len(segments) - 1):
        lead, backing = segments[index], segments[(index + 1) % len(segments)]
        scale = 0.9 / max(np.max(np.abs(lead + backing)), 1e-9)
        song = folder / f"mix_{index:03d}"
        song.mkdir(parents=True, exist_ok=True)
        stems = {"lead": (lead * scale).astype(np.float32), "backing": (backing * scale).astype(np.float32)}
        stems["mixture"] = stems["lead"] + stems["backing"]
        for name, audio in stems.items():
            tmp = song / f".{name}.tmp.wav"
            sf.write(str(tmp), audio, sample_rate, subtype="FLOAT")
            os.replace(tmp, song / f"{name}.wav")


def make_music_dataset(root=None, num_songs=16, num_test_songs=4, seconds=10.0, seed=0,
                       require_all=True, progress=None):
    """Build the collection under ``root`` (idempotent) and return ``{kind: {split: folder}}``.

    ``require_all``: raise if fluidsynth or the recorded tracks are missing (the shipped presets
    need all three kinds); ``False`` builds whatever is available. ``progress``: optional
    callable receiving a one-line message per stage and per generated song.
    """
    def say(message):
        if progress is not None:
            progress(message)

    root = Path(root).expanduser() if root is not None else default_music_dataset_dir()
    root.mkdir(parents=True, exist_ok=True)
    have_fluidsynth = fluidsynth_available() is not None
    tracks = recorded_tracks()
    if require_all and (not have_fluidsynth or not tracks):
        raise RuntimeError(
            "the music collection needs fluidsynth, a General MIDI soundfont and Debian's game music: "
            "apt-get install fluidsynth fluid-soundfont-gm drascula-music planetblupi-music-ogg "
            "(or pass require_all=False / --partial to build what is available)")
    kinds = {}
    args = dict(num_songs=num_songs, num_test_songs=num_test_songs, seconds=seconds, seed=seed)
    say(f"synth_numpy: {num_songs} + {num_test_songs} songs in {root / 'synth_numpy'} (kept if already there)")
    kinds["synth_numpy"] = make_synthetic_dataset(root / "synth_numpy", renderer="numpy", progress=progress, **args)
    if have_fluidsynth:
        say(f"synth_fluidsynth: {num_songs} + {num_test_songs} songs in {root / 'synth_fluidsynth'} "
            "(kept if already there)")
        kinds["synth_fluidsynth"] = make_synthetic_dataset(
            root / "synth_fluidsynth", renderer="fluidsynth", progress=progress, **dict(args, seed=seed + 1))
    if tracks:
        train, test = split_recorded(tracks)
        say(f"recorded: linking {len(train)} train and {len(test)} test tracks in {root / 'recorded'}")
        _link_tracks(root / "recorded" / "train", train)
        _link_tracks(root / "recorded" / "test", test)
        kinds["recorded"] = root / "recorded"
        mixes = root / "recorded_mixes" / "test"
        if not mixes.is_dir():
            say(f"recorded_mixes: mixing held-out tracks into {mixes}")
            _write_recorded_mixes(mixes, test, seconds)
    folders = {kind: {split: str(path / split) for split in ("train", "test")} for kind, path in kinds.items()}
    if tracks:
        folders["recorded_mixes"] = {"test": str(root / "recorded_mixes" / "test")}
    unlike = recorded_tracks(UNLIKE_SOURCES)
    if unlike:
        mixes = root / "orchestral_mixes" / "test"
        if not mixes.is_dir():
            say(f"orchestral_mixes: mixing {UNLIKE_TRACKS} orchestral tracks (never trained on) into {mixes}")
            _write_recorded_mixes(mixes, unlike[:: max(1, len(unlike) // UNLIKE_TRACKS)][:UNLIKE_TRACKS], seconds)
        folders["orchestral_mixes"] = {"test": str(mixes)}
    manifest = dict(folders=folders, seed=seed, num_songs=num_songs, num_test_songs=num_test_songs,
                    seconds=seconds, recorded_test_every=TEST_EVERY)
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, root / MANIFEST_NAME)
    say(f"done: {root / MANIFEST_NAME}")
    return folders
