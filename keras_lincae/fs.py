"""Small file-system helpers shared by the atomic writers (presets, exports, CLI outputs)."""

import os


def give_usual_mode(path):
    """chmod `path` to what `open`/`mkdir` would have created under the current umask.

    `tempfile.mkstemp`/`mkdtemp` create 0600 files and 0700 folders; a preset, export or output
    renamed from one of them would otherwise be unreadable by other users (e.g. a model server).
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)
