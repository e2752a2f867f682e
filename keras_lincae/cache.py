"""Where keras-lincae keeps downloaded, converted and generated files."""

import os
from pathlib import Path


def cache_root():
    """``$KERAS_LINCAE_CACHE`` if set, else ``~/.cache/keras_lincae`` (a `Path`)."""
    base = os.environ.get("KERAS_LINCAE_CACHE")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "keras_lincae"
