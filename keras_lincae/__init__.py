"""keras-lincae: linear consistency autoencoders (Lin-CAE) for music in Keras 3."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ logging quiet

__version__ = "0.1.0"

from keras_lincae.convert import convert_official_checkpoint  # noqa: E402
from keras_lincae.models.lincae import LinCAE  # noqa: E402
from keras_lincae.presets import list_presets  # noqa: E402

__all__ = ["LinCAE", "convert_official_checkpoint", "list_presets", "__version__"]
