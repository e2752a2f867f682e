"""Files of the `lincae` command: output checks, atomic writes, audio and latent files.

Outputs are written to a temporary file `.lincae-<pid>-<random>.tmp` beside the output and
renamed, so a failed run never leaves a partial file; a killed run's temporary file is removed by
the next run writing into that folder. Audio is written whole or block by block as it is decoded
(`write_audio_blocks`, for `--stream`).
"""

import contextlib
import os
import re
import sys
import tempfile

import numpy as np

from keras_lincae import entry
from keras_lincae.fs import give_usual_mode

PROG = "lincae"
AUDIO_OUTPUTS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}
LATENT_SUFFIX = ".npz"
SAMPLE_RATES = (8_000, 384_000)  # accepted audio sample rates, inputs and outputs (Hz)
TEMP_PREFIX = ".lincae-"  # temporary outputs: .lincae-<pid>-<random>.tmp beside the output
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-\w+\.tmp")


class CliError(ValueError):
    """Bad input: reported as one line, exit status 2."""


def note(message):
    entry.note(PROG, message)


def check_paths(output, allowed, inputs, overwrite):
    """Check `output` and `inputs` before any work; remove stale temporary files; -> output suffix."""
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in allowed:
        raise CliError(f"output {output} must end in {' or '.join(allowed)}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise CliError(f"output folder does not exist: {folder}")
    if os.path.isdir(output):
        raise CliError(f"output {output} is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"output folder is not writable: {folder}")
    name_max = _name_max(folder)
    if len(os.fsencode(os.path.basename(output))) > name_max:
        raise CliError(f"output file name is longer than the {name_max} bytes this file system allows: {output}")
    for path in inputs:
        if not os.path.exists(path):
            raise CliError(f"input file not found: {path}")
        if os.path.isdir(path):
            raise CliError(f"input is a folder, not a file: {path}")
        if os.path.exists(output) and os.path.samefile(path, output):
            raise CliError(f"output {output} is the input {path}; write to another file")
    if os.path.exists(output) and not overwrite:
        raise CliError(f"output {output} exists; pass --overwrite (-y) to replace it")
    _remove_stale_temporaries(folder)
    return suffix


def _name_max(folder):
    """Longest file name (bytes) in `folder`: 255 where the system cannot tell."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no such variable
        return 255
    return limit if limit > 0 else sys.maxsize  # -1: no limit


def _remove_stale_temporaries(folder):
    """Delete `.lincae-<pid>-*.tmp` files of processes that no longer run (killed mid-write)."""
    for name in os.listdir(folder):
        match = _TEMP_NAME.fullmatch(name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def _process_alive(pid):
    if os.name != "posix":  # os.kill(pid, 0) would signal the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # e.g. PermissionError: another user's process
        return True
    return True


def atomic_write(path, write):
    """Call `write(temporary_path)` and rename the result onto `path`; never leaves a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        give_usual_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_audio(path, audio, sample_rate, quiet):
    """Write `(channels, samples)` audio as WAV (float32) or FLAC (24-bit, clipped to [-1, 1])."""
    audio = np.asarray(audio, dtype=np.float32)
    write_audio_blocks(path, [audio], sample_rate, audio.shape[0], quiet)


def write_audio_blocks(path, blocks, sample_rate, channels, quiet):
    """Write `(channels, n)` blocks one after the other as they come (bounded memory), as `write_audio`."""
    import soundfile as sf

    file_format, subtype = AUDIO_OUTPUTS[os.path.splitext(path)[1].lower()]
    peak = 0.0

    def write(tmp):
        nonlocal peak
        with sf.SoundFile(tmp, "w", sample_rate, channels, subtype, format=file_format) as f:
            for block in blocks:
                block = np.asarray(block, dtype=np.float32)
                if file_format == "FLAC":
                    peak = max(peak, float(np.max(np.abs(block), initial=0.0)))
                    block = np.clip(block, -1.0, 1.0)
                f.write(block.T)

    atomic_write(path, write)
    if peak > 1.0 and not quiet:
        note(f"warning: peak {peak:.3f} exceeds 1, clipping for FLAC (write .wav to keep it)")


def write_latents(path, chunked, preset):
    values = chunked.to_dict()
    values["latents"] = values["latents"][0]  # one file = one item: (channels, chunks, frames, C)
    values["preset"] = np.str_(preset)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **values)

    atomic_write(path, write)


def read_latents(path):
    """-> (ChunkedLatents with a batch axis of 1, preset name or None)."""
    from keras_lincae.long_audio import ChunkedLatents

    try:
        with open(path, "rb") as f:
            zipped = f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (empty or not), as .npz are
        if zipped:
            with np.load(path, allow_pickle=False) as npz:
                values = {k: npz[k] for k in npz.files}
    except Exception as error:  # zipfile.BadZipFile, OSError, ValueError, EOFError, ...
        # numpy's message for an object array suggests allow_pickle=True, which would run code from the file
        reason = "it holds Python objects, which are not loaded" if "allow_pickle" in str(error) else error
        raise CliError(f"cannot read latent file {path}: {reason}") from error
    if not zipped:
        raise CliError(f"cannot read latent file {path}: it is not a .npz archive (latent files are written "
                       "by `lincae encode`)")
    if "latents" not in values:
        raise CliError(f"latent file {path} has no 'latents' array (was it written by `lincae encode`?)")
    values["latents"] = np.asarray(values["latents"])[None]
    try:
        chunked = ChunkedLatents.from_dict(values)
    except ValueError as error:
        raise CliError(f"latent file {path}: {error}") from error
    preset = str(values["preset"]) if "preset" in values else None
    return chunked, preset


def read_audio(path, sample_rate, quiet):
    """-> float32 `(channels, samples)` at `sample_rate`."""
    import soundfile as sf

    from keras_lincae import data

    try:
        rate = int(sf.info(path).samplerate)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise CliError(f"cannot decode audio file {path}: {error}") from error
    if not SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
        raise CliError(f"audio file {path} has the sample rate {rate} Hz; "
                       f"only {SAMPLE_RATES[0]} to {SAMPLE_RATES[1]} Hz is supported")
    audio = data.load_audio(path, sample_rate=None)
    if rate != sample_rate:
        if not quiet:
            note(f"resampling {path} from {rate} Hz to {sample_rate} Hz")
        audio = data.resample(audio, rate, sample_rate)
    return audio


def is_latent_file(path):
    return os.path.splitext(path)[1].lower() == LATENT_SUFFIX
