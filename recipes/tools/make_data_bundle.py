"""Pack the training audio into a compressed bundle that fits a small upload (a GPU machine's).

    python recipes/tools/make_data_bundle.py OUT_DIR [--budget-mb 40] [--data DIR ...] [--wheels DIR]
        [--overwrite] [--quiet]

Every audio file of the `--data` folders (default: the music collection's three train splits,
`python recipes/make_dataset.py`) becomes an OGG Vorbis file, mono 44.1 kHz, in
`OUT_DIR/<source>/` at the same relative path, so `recipes/train.py --data OUT_DIR/<source> ...`
reads the bundle as it reads the originals (same file discovery, MUSDB-style song folders and
stems). Files in song folders (a folder holding `mixture.*`: mixture and stems must stay aligned)
are copied whole; every other file (a recorded track) is cut to its first seconds so that it
takes an equal share of the budget left after the songs: tracks are packed shortest first, and
what a short track leaves unused goes to the longer ones. Sizes are measured as the files are
written; the bundle (audio, wheels, `bundle.json`) never exceeds `--budget-mb` MB (10^6 bytes).

`--wheels DIR` copies DIR's `*.whl` files into `OUT_DIR/wheels` (counted in the budget):
`recipes/tools/gpu_segment.sh` installs them on a machine without network that lacks packages.

The bundle is written into a temporary folder beside OUT_DIR and renamed at the end; an existing
non-empty OUT_DIR is refused unless it is a bundle and `--overwrite` is given. `bundle.json`
lists the sources in `--data` order (`recipes/tools/gpu_segment.sh` passes them to `--data` in that
order, matching a config's `data_weights`). A summary goes to stdout (files, minutes of audio
and MB per source), progress to stderr. Errors are one line `make_data_bundle.py: error: ...`
with exit status 2.
"""

import json
import math
import os
import shutil
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "make_data_bundle.py"
MANIFEST = "bundle.json"
WHEELS = "wheels"
SAMPLE_RATE = 44100
FIRST_BYTES_PER_SECOND = 13_000.0  # mono Vorbis at libsndfile's default quality, before a measurement
MANIFEST_RESERVE = 16_000  # bytes kept free for bundle.json (plus TRACK_RESERVE per cut track)
TRACK_RESERVE = 400
MIN_TRACK_SECONDS = 1.0
SPLIT_NAMES = ("train", "test", "valid", "validation")
WRITE_BLOCK = 16384  # frames per Vorbis write


def default_sources():
    """The music collection's train splits, in the order of the `small` configs' `data`."""
    from keras_lincae.data.music_dataset import default_music_dataset_dir

    root = default_music_dataset_dir()
    return [str(root / kind / "train") for kind in ("synth_numpy", "synth_fluidsynth", "recorded")]


def source_names(folders):
    """A folder name inside the bundle per source: its own name, or its parent's for a split
    folder (`.../synth_numpy/train` -> `synth_numpy`); repeated names get `_2`, `_3`, ..."""
    names = []
    for folder in folders:
        path = os.path.normpath(os.path.abspath(os.path.expanduser(folder)))
        base = os.path.basename(path)
        if base.lower() in SPLIT_NAMES and os.path.basename(os.path.dirname(path)):
            base = os.path.basename(os.path.dirname(path))
        name, k = base, 2
        while name in names or name in (WHEELS,):
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def read_mono(path, seconds=None):
    """The first `seconds` (all when None) of `path` as float32 mono at 44.1 kHz."""
    import numpy as np
    import soundfile as sf

    from keras_lincae.data import AudioDecodeError, resample

    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            frames = -1 if seconds is None else int(math.ceil(seconds * rate))
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioDecodeError(f"cannot decode audio file {path}: {error}") from error
    if data.size == 0:
        raise AudioDecodeError(f"audio file {path} is empty (no samples)")
    if not np.all(np.isfinite(data)):
        raise AudioDecodeError(f"audio file {path} contains non-finite samples (NaN or inf)")
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = resample(mono, rate, SAMPLE_RATE)
    return mono.astype(np.float32, copy=False)


def write_ogg(path, audio):
    """Write mono `audio` as OGG Vorbis; return the file's size in bytes. Written in blocks: libvorbis
    puts a whole write's samples on the stack (`alloca`), so one long write crashes the process
    (libsndfile issue 1095)."""
    import soundfile as sf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(audio), WRITE_BLOCK):
            f.write(audio[start: start + WRITE_BLOCK])
    return os.path.getsize(path)


def duration_seconds(path):
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception as error:
        raise ValueError(f"cannot decode audio file {path}: {error}") from error
    if not info.samplerate or info.frames <= 0:
        raise ValueError(f"audio file {path} is empty (no samples)")
    return info.frames / info.samplerate


def plan(folders, names):
    """`[(source index, path, relative output path, in a song folder)]` for every audio file."""
    from keras_lincae.data import find_musdb_songs, list_audio_files

    items, targets = [], {}
    for index, (folder, name) in enumerate(zip(folders, names)):
        root = os.path.expanduser(folder)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"--data {folder}: no such folder")
        files = list_audio_files(root)
        if not files:
            raise ValueError(f"--data {folder}: no audio files (.wav, .flac, .ogg, .mp3) in it")
        songs = set(find_musdb_songs(root))
        for path in files:
            relative = os.path.splitext(os.path.relpath(path, root))[0] + ".ogg"
            target = os.path.join(name, relative)
            if target in targets:
                raise ValueError(f"--data {folder}: {targets[target]} and {path} would both become "
                                 f"{target} in the bundle")
            targets[target] = path
            items.append((index, path, target, os.path.dirname(path) in songs))
    return items


class Budget:
    """Bytes written so far against the limit; raises as soon as a file would break it."""

    def __init__(self, limit, budget):
        self.limit, self.budget, self.used = int(limit), int(budget), 0

    @property
    def left(self):
        return self.limit - self.used

    def add(self, size, what):
        if self.used + size > self.limit:
            raise ValueError(f"the bundle would exceed --budget-mb {self.budget / 1e6:g} at {what} "
                             f"({(self.used + size + self.budget - self.limit) / 1e6:.1f} MB with the "
                             "manifest's reserve); raise the budget or bundle fewer folders")
        self.used += size


def cut_track(path, target, share, duration, rate_guess):
    """Encode the first seconds of `path` into `target` in at most `share` bytes (the whole track
    when it fits); returns `(seconds, bytes)`. Vorbis is variable-rate: the cut is shortened by
    the measured rate until the file fits."""
    seconds = min(duration, share / rate_guess)
    for _ in range(8):
        if seconds < min(MIN_TRACK_SECONDS, duration):
            break
        size = write_ogg(target, read_mono(path, None if seconds >= duration else seconds))
        if size <= share:
            return seconds, size
        seconds *= 0.97 * share / size
    if os.path.exists(target):
        os.remove(target)
    raise ValueError(f"--budget-mb leaves {share / 1e3:.0f} kB for {path}, less than "
                     f"{MIN_TRACK_SECONDS:g} s of it; raise the budget or bundle fewer tracks")


def make_bundle(out, folders, budget_bytes, wheels=None, overwrite=False, progress=None):
    """Write the bundle into `out` (atomically); return its manifest (a dict)."""
    say = progress or (lambda message: None)
    out = os.path.abspath(os.path.expanduser(out))
    if os.path.lexists(out):
        if not os.path.isdir(out):
            raise NotADirectoryError(f"OUT_DIR {out} is a file, not a folder")
        if os.listdir(out):
            if not os.path.isfile(os.path.join(out, MANIFEST)):
                raise ValueError(f"OUT_DIR {out} is not empty and is not a data bundle; choose a new or empty folder")
            if not overwrite:
                raise ValueError(f"OUT_DIR {out} already holds a data bundle; pass --overwrite to replace it")
    for folder in folders:
        source = os.path.realpath(os.path.expanduser(folder))
        if os.path.realpath(out) == source or os.path.realpath(out).startswith(source + os.sep):
            raise ValueError(f"OUT_DIR {out} is inside --data {folder}")
    if budget_bytes <= 0:
        raise ValueError(f"--budget-mb must be positive, got {budget_bytes / 1e6:g}")
    wheel_files = []
    if wheels is not None:
        if not os.path.isdir(wheels):
            raise FileNotFoundError(f"--wheels {wheels}: no such folder")
        wheel_files = sorted(f for f in os.listdir(wheels) if f.endswith(".whl"))
        if not wheel_files:
            raise ValueError(f"--wheels {wheels}: no .whl files in it")
    names = source_names(folders)
    items = plan(folders, names)
    entry.check_writable_folder(os.path.dirname(out), "OUT_DIR")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=os.path.dirname(out))
    try:
        from keras_lincae.fs import give_usual_mode

        give_usual_mode(tmp)
        start = time.time()
        tracks = [item for item in items if not item[3]]
        budget = Budget(budget_bytes - MANIFEST_RESERVE - TRACK_RESERVE * len(tracks), budget_bytes)
        sources = [dict(name=name, folder=name, source=os.path.abspath(os.path.expanduser(folder)), files=0,
                        songs=0, tracks=0, cut_tracks=0, seconds=0.0, source_seconds=0.0, bytes=0)
                   for folder, name in zip(folders, names)]
        for wheel in wheel_files:
            os.makedirs(os.path.join(tmp, WHEELS), exist_ok=True)
            shutil.copyfile(os.path.join(wheels, wheel), os.path.join(tmp, WHEELS, wheel))
            budget.add(os.path.getsize(os.path.join(tmp, WHEELS, wheel)), f"wheel {wheel}")
        if wheel_files:
            say(f"wheels: {len(wheel_files)} files, {budget.used / 1e6:.1f} MB")
        songs = {}
        for index, path, target, in_song in items:  # song folders: whole files, in order
            if not in_song:
                continue
            audio = read_mono(path)
            size = write_ogg(os.path.join(tmp, target), audio)
            budget.add(size, target)
            src = sources[index]
            src["files"] += 1
            src["bytes"] += size
            src["seconds"] += len(audio) / SAMPLE_RATE
            src["source_seconds"] += len(audio) / SAMPLE_RATE
            songs.setdefault(index, set()).add(os.path.dirname(path))
        for index, folders_of_songs in songs.items():
            sources[index]["songs"] = len(folders_of_songs)
            say(f"{sources[index]['name']}: {sources[index]['songs']} songs, {sources[index]['files']} files, "
                f"{sources[index]['bytes'] / 1e6:.1f} MB")
        durations = {path: duration_seconds(path) for _, path, _, _ in tracks}
        tracks.sort(key=lambda item: (durations[item[1]], item[2]))  # short first: their surplus rolls over
        written_bytes, written_seconds, cuts = 0, 0.0, {}
        for k, (index, path, target, _) in enumerate(tracks):
            share = budget.left / (len(tracks) - k)
            rate = written_bytes / written_seconds if written_seconds else FIRST_BYTES_PER_SECOND
            seconds, size = cut_track(path, os.path.join(tmp, target), share, durations[path], rate * 1.02)
            budget.add(size, target)
            written_bytes, written_seconds = written_bytes + size, written_seconds + seconds
            src = sources[index]
            src["files"] += 1
            src["tracks"] += 1
            src["bytes"] += size
            src["seconds"] += seconds
            src["source_seconds"] += durations[path]
            cut = seconds < durations[path]
            src["cut_tracks"] += int(cut)
            cuts[target] = dict(source=path, seconds=round(seconds, 3), source_seconds=round(durations[path], 3))
            if (k + 1) % 8 == 0 or k + 1 == len(tracks):
                say(f"tracks: {k + 1}/{len(tracks)} ({budget.used / 1e6:.1f} MB so far)")
        for src in sources:
            src["seconds"] = round(src["seconds"], 3)
            src["source_seconds"] = round(src["source_seconds"], 3)
        manifest = dict(
            format=1,
            codec="OGG Vorbis (libsndfile default quality), mono",
            sample_rate=SAMPLE_RATE,
            budget_bytes=int(budget_bytes),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            seconds_to_build=round(time.time() - start, 1),
            sources=sources,
            wheels=wheel_files,
            tracks=cuts,
        )
        manifest["bytes"] = 0
        for _ in range(3):  # the manifest's own size is part of the total it records
            text = json.dumps(manifest, indent=1)
            total = budget.used + len(text.encode())
            if manifest["bytes"] == total:
                break
            manifest["bytes"] = total
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            f.write(text)
        measured = folder_bytes(tmp)
        if measured > budget_bytes:  # not reachable: the reserve covers the manifest
            raise ValueError(f"the bundle came out at {measured / 1e6:.2f} MB, over --budget-mb "
                             f"{budget_bytes / 1e6:g}")
        replace_folder(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def replace_folder(tmp, out):
    """Rename `tmp` to `out`; an existing `out` (empty, or a bundle: checked before) is removed."""
    old = None
    if os.path.isdir(out):
        if not os.listdir(out):
            os.rmdir(out)
        else:
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
            os.rename(out, os.path.join(old, "bundle"))
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary(out, manifest):
    lines = [f"{out}: {manifest['bytes'] / 1e6:.1f} MB of {manifest['budget_bytes'] / 1e6:g} MB, "
             f"OGG Vorbis mono {manifest['sample_rate'] / 1000:g} kHz"]
    width = max(len(s["name"]) for s in manifest["sources"])
    for s in manifest["sources"]:
        what = f"{s['files']} files"
        if s["songs"]:
            what += f" ({s['songs']} songs with stems)"
        if s["tracks"]:
            what += f" ({s['tracks']} tracks, {s['cut_tracks']} cut)"
        minutes = f"{s['seconds'] / 60:.1f} min of audio"
        if s["seconds"] < s["source_seconds"] - 0.5:
            minutes += f" (of {s['source_seconds'] / 60:.1f})"
        lines.append(f"  {s['name']:<{width}}  {what}, {minutes}, {s['bytes'] / 1e6:.1f} MB")
    if manifest["wheels"]:
        size = sum(os.path.getsize(os.path.join(out, WHEELS, w)) for w in manifest["wheels"])
        lines.append(f"  wheels: {len(manifest['wheels'])} files ({', '.join(w.split('-')[0] for w in manifest['wheels'])}), "
                     f"{size / 1e6:.1f} MB")
    lines.append("train with: --data " + " ".join(os.path.join(out, s["folder"]) for s in manifest["sources"]))
    return "\n".join(lines)


def main(argv=None):
    parser = entry.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="OUT_DIR", help="new (or empty) folder for the bundle")
    parser.add_argument("--budget-mb", type=float, default=40.0,
                        help="most MB (10^6 bytes) the whole bundle may take (default 40)")
    parser.add_argument("--data", nargs="+", default=None,
                        help="audio folders to pack (default: the music collection's train splits "
                             "synth_numpy, synth_fluidsynth, recorded)")
    parser.add_argument("--wheels", default=None, help="folder of .whl files to carry in OUT_DIR/wheels")
    parser.add_argument("--overwrite", action="store_true", help="replace the bundle already in OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    entry.add_flags(parser, backend=False)
    args = parser.parse_args(argv)
    entry.prepare(PROG, debug=args.debug, needs_keras=False)
    if not math.isfinite(args.budget_mb) or args.budget_mb <= 0:
        raise ValueError(f"--budget-mb must be a positive number, got {args.budget_mb:g}")
    folders = args.data or default_sources()
    if not args.data and not all(os.path.isdir(folder) for folder in folders):
        raise FileNotFoundError(f"the music collection's train splits are not all there ({', '.join(folders)}): "
                                "build them with python recipes/make_dataset.py, or pass --data")
    progress = None if args.quiet else (lambda message: entry.note(PROG, message))
    manifest = make_bundle(args.out, folders, int(args.budget_mb * 1e6), wheels=args.wheels,
                           overwrite=args.overwrite, progress=progress)
    print(summary(os.path.abspath(os.path.expanduser(args.out)), manifest))
    return 0


if __name__ == "__main__":
    sys.exit(entry.run(main, PROG))
