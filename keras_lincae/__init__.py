"""keras-lincae: linear consistency autoencoders (Lin-CAE) for music in Keras 3.

The public names load on first use (`from keras_lincae import LinCAE`), so that the command line
and the recipes can choose the Keras backend before Keras is imported (`keras_lincae.entry`).
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "LinCAE": "keras_lincae.models.lincae",
    "convert_official_checkpoint": "keras_lincae.convert",
    "list_presets": "keras_lincae.presets",
}

__all__ = ["LinCAE", "convert_official_checkpoint", "list_presets", "__version__"]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'keras_lincae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
