"""keras-lincae: linear consistency autoencoders (Lin-CAE) for music in Keras 3."""

__version__ = "0.1.0"
