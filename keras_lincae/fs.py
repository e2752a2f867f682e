"""File-system helpers: the cache folder and the file mode of atomic writes (presets, exports, outputs)."""

import os
from pathlib import Path


def cache_root():
    """``$KERAS_LINCAE_CACHE`` if set, else ``~/.cache/keras_lincae`` (a `Path`)."""
    base = os.environ.get("KERAS_LINCAE_CACHE")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "keras_lincae"


def give_usual_mode(path):
    """chmod `path` to what `open`/`mkdir` would have created under the current umask.

    `tempfile.mkstemp`/`mkdtemp` create 0600 files and 0700 folders; a preset, export or output
    renamed from one of them would otherwise be unreadable by other users (e.g. a model server).
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)
