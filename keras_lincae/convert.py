"""Conversion of official `linear-cae` checkpoints (PyTorch) into keras-lincae models and presets."""

from keras_lincae.models.lincae import LinCAE
from keras_lincae.models.official_checkpoint import convert_release


def convert_official_checkpoint(src_dir, preset_dir=None, scale_factor=None, name=None):
    """Convert an official release folder into a `LinCAE` (and a preset when `preset_dir` is given).

    Args:
        src_dir: folder with `autoencoder_inference_model_last.pth` and the three
            `*_kwargs_last.yaml` files (the official Hugging Face layout).
        preset_dir: optional output preset directory (written atomically).
        scale_factor: latent scale; default: the official value for a known
            release folder name (33 lin-cae, 40 lin-cae-2, 15 m2l), else 1.
        name: optional model name stored in the preset metadata.
    Returns:
        The converted `LinCAE`.
    Raises:
        FileNotFoundError: a release file is missing. ValueError: the checkpoint does not
        match its configuration, or an unsupported official argument.
    """
    return convert_release(LinCAE, src_dir, preset_dir, scale_factor=scale_factor, name=name)
