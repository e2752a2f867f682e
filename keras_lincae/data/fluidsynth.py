"""Rendering notes with fluidsynth and a General MIDI soundfont (optional, for ``synth``)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import numpy as np
import soundfile as sf

SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
_GM_PROGRAMS = {"vocals": 53, "bass": 33, "other": 0}  # Voice Oohs, Fingered Bass, Piano


def _varlen(value):
    value = int(value)
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def write_midi(path, notes, tempo, program=0, channel=0, ticks_per_beat=480):
    """Write ``notes`` [(start_s, dur_s, midi_note, velocity 0..1), ...] as a format-0 MIDI file.

    ``channel`` 9 is the General MIDI drum channel (``program`` is then ignored).
    """
    seconds_per_tick = 60.0 / tempo / ticks_per_beat
    events = []  # (tick, order, bytes): note-offs sort before note-ons at the same tick
    for start, dur, note, vel in notes:
        on = int(round(start / seconds_per_tick))
        off = max(on + 1, int(round((start + dur) / seconds_per_tick)))
        velocity = int(np.clip(round(vel * 127), 1, 127))
        events.append((on, 1, bytes([0x90 | channel, int(note), velocity])))
        events.append((off, 0, bytes([0x80 | channel, int(note), 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    track += b"\x00\xff\x51\x03" + int(round(60e6 / tempo)).to_bytes(3, "big")
    if channel != 9:
        track += b"\x00" + bytes([0xC0 | channel, int(program)])
    last = 0
    for tick, _, data in events:
        track += _varlen(tick - last) + data
        last = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat)
    with open(path, "wb") as f:
        f.write(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))
    return path


def fluidsynth_available(soundfont=None):
    """Return ``(fluidsynth_binary, soundfont_path)`` when both are installed, else ``None``.

    The soundfont is ``soundfont``, else ``$KERAS_LINCAE_SOUNDFONT``, else the first of
    ``SOUNDFONT_PATHS`` that exists (Debian's ``fluid-soundfont-gm`` package ships the first).
    """
    binary = shutil.which("fluidsynth")
    if binary is None:
        return None
    candidates = [soundfont] if soundfont else (
        [os.environ["KERAS_LINCAE_SOUNDFONT"]] if os.environ.get("KERAS_LINCAE_SOUNDFONT")
        else list(SOUNDFONT_PATHS))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return binary, str(candidate)
    return None


def render_fluidsynth(name, notes, n, sr, tempo, tools, workdir):
    """Stem ``name`` of ``notes`` rendered by fluidsynth (``tools`` from ``fluidsynth_available``)
    in ``workdir``: float64 ``(n,)`` at ``sr``."""
    binary, soundfont = tools
    if not notes:
        return np.zeros(n)
    midi_path = os.path.join(workdir, f"{name}.mid")
    wav_path = os.path.join(workdir, f"{name}.wav")
    if name == "drums":
        write_midi(midi_path, notes, tempo, channel=9)
    else:
        write_midi(midi_path, notes, tempo, program=_GM_PROGRAMS[name], channel=0)
    cmd = [binary, "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sr),
           "-O", "float", "-T", "wav", "-F", wav_path, soundfont, midi_path]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if result.returncode != 0 or not os.path.exists(wav_path):
        raise RuntimeError(f"fluidsynth failed rendering {name} ({' '.join(cmd)}): "
                           f"{result.stderr.decode(errors='replace')[-2000:]}")
    audio, _ = sf.read(wav_path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)[:n]
    return np.pad(audio, (0, n - len(audio)))
