"""The on-disk preset folder: its file names, the save lock, and the repair of killed saves.

A save stages its files beside the preset, holds `.<name>.lock` (created O_EXCL, with host and
pid), renames the previous preset to a backup and the staging folder into place;
`recover_preset` finishes what a killed save left (saves and loads call it first).
"""

import os
import shutil
import socket
import time
import uuid

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
# The files a save writes; an overwrite replaces these and keeps anything else in the folder.
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
WEIGHTS_CHECKSUM = "weights_sha256"  # metadata.json key: SHA-256 of model.weights.h5
FORMAT_VERSION = 1
SAVE_WAIT_SECONDS = 60.0  # how long a load waits for a save of the same preset to finish


def pause(stage):
    """Test hook: `KERAS_LINCAE_PRESET_PAUSE=<stage>:<seconds>` sleeps at that stage of a save."""
    hook = os.environ.get("KERAS_LINCAE_PRESET_PAUSE", "")
    if hook.partition(":")[0] == stage:
        time.sleep(float(hook.partition(":")[2] or 0))


def _siblings(preset_dir, kind):
    """Work folders `.<name>.<kind>-*` of saves to `preset_dir`, newest first."""
    parent, base = os.path.split(preset_dir)
    prefix = f".{base}.{kind}-"
    if not os.path.isdir(parent):
        return []
    found = [os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix)]
    return sorted(found, key=lambda p: os.stat(p).st_mtime if os.path.exists(p) else 0, reverse=True)


# ----------------------------------------------------------------------------- save lock
def _lock_path(preset_dir):
    parent, base = os.path.split(preset_dir)
    return os.path.join(parent, f".{base}.lock")


def _read_lock(lock):
    """The lock file's text (`<pid> <host> <token>`), or None when there is none."""
    try:
        with open(lock) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _holder_alive(text):
    """False only for a lock whose process is known to be gone (same host, no such pid)."""
    if text is None:
        return False
    try:
        pid, host = text.split()[:2]
        pid = int(pid)
    except ValueError:
        return True  # still being written, or not written by a save: never taken over
    if host != socket.gethostname() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _take_over(lock, stale):
    """Remove the stale lock `lock` (text `stale`) unless another process replaced it first."""
    aside = f"{lock}.{uuid.uuid4().hex}"
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _read_lock(aside) != stale:  # moved a new writer's lock aside: put it back
        try:
            os.link(aside, lock)
        except FileExistsError:
            pass
    os.remove(aside)


def acquire_lock(preset_dir):
    """Create the save lock of `preset_dir` (O_EXCL); returns `(path, text)` for `_release_lock`."""
    lock = _lock_path(preset_dir)
    text = f"{os.getpid()} {socket.gethostname()} {uuid.uuid4().hex}\n"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read_lock(lock)
            if _holder_alive(held):
                pid = (held.split() or ["?"])[0]
                raise RuntimeError(
                    f"another save of {preset_dir} is in progress (lock file {lock}, pid {pid}); "
                    "delete the lock file if no such save is running")
            _take_over(lock, held)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return lock, text
    raise RuntimeError(f"could not take the lock file {lock} of {preset_dir}: other saves keep taking it")


def release_lock(held):
    lock, text = held
    if _read_lock(lock) == text:
        os.remove(lock)


def _save_running(preset_dir):
    return _holder_alive(_read_lock(_lock_path(os.path.realpath(preset_dir))))


def wait_for_save(preset_dir):
    """Wait while a live process saves `preset_dir`; True when there was one to wait for."""
    lock = _lock_path(os.path.realpath(preset_dir))
    deadline, waited = time.monotonic() + SAVE_WAIT_SECONDS, False
    while _save_running(preset_dir):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{preset_dir} is being saved by another process (lock file {lock}); try again later")
        waited = True
        time.sleep(0.1)
    return waited


# -------------------------------------------------------------------------------- saving
def retire_backup(backup, preset_dir):
    """Move the user's files from a replaced preset in `backup` into `preset_dir`, then delete
    the old preset's own files and the empty backup (a name clash keeps the file in `backup`)."""
    old = os.path.join(backup, "preset")
    if os.path.isdir(old) and is_saved_preset(preset_dir):
        for name in os.listdir(old):
            if name not in PRESET_FILES and not os.path.lexists(os.path.join(preset_dir, name)):
                os.rename(os.path.join(old, name), os.path.join(preset_dir, name))
        for name in PRESET_FILES:
            if os.path.isfile(os.path.join(old, name)):
                os.remove(os.path.join(old, name))
    for folder in (old, backup):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            pass
        except OSError:
            return  # files left that could not be moved back: kept where they are


def finish_interrupted_saves(preset_dir):
    """Repair what killed saves to `preset_dir` left (hold its lock); True when a preset was restored.

    Killed between the two renames: the previous preset is renamed back from its backup.
    Killed after them: the user's files are moved from the backup into the new preset.
    """
    restored = False
    for backup in _siblings(preset_dir, "old"):
        old = os.path.join(backup, "preset")
        if not os.path.lexists(preset_dir) and os.path.isdir(old):
            os.rename(old, preset_dir)
            restored = True
        retire_backup(backup, preset_dir)
    for staging in _siblings(preset_dir, "staging"):  # only ever holds files a save wrote
        shutil.rmtree(staging, ignore_errors=True)
    return restored


def recover_preset(preset_dir):
    """Finish saves to `preset_dir` that were killed midway; returns True when a preset was restored.

    Never touches the files of a save in progress: waits for it while the preset is missing
    (between its renames). Every load runs this first.
    """
    preset_dir = os.path.realpath(preset_dir)
    if not _siblings(preset_dir, "old") or (os.path.lexists(preset_dir) and _save_running(preset_dir)):
        return False
    if wait_for_save(preset_dir):
        return False
    try:
        held = acquire_lock(preset_dir)
    except (RuntimeError, OSError):
        return False  # a save started meanwhile (it repairs), or a read-only folder
    try:
        return finish_interrupted_saves(preset_dir)
    finally:
        release_lock(held)


def is_saved_preset(path):
    return all(os.path.isfile(os.path.join(path, name)) for name in (CONFIG_FILE, METADATA_FILE))
