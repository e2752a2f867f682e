"""Registry of built-in preset names."""

import os

OFFICIAL_HF_REPO = "BernardoTorres/linear_consistency_autoencoders"

TINY_ARCHITECTURE = dict(
    base_channels=8,
    layers_list=[1, 1, 1, 1, 1],
    bottleneck_base_channels=32,
    bottleneck_channels=16,
    cond_channels=32,
    num_bottleneck_layers=1,
)

SMALL_ARCHITECTURE = dict(
    base_channels=8,
    layers_list=[1, 1, 1, 1, 1],
    multipliers_list=[1, 2, 4, 8, 8],
    bottleneck_base_channels=128,
    bottleneck_channels=64,
    cond_channels=64,
    num_bottleneck_layers=2,
)

# About the small presets' training clips (32 and 64 spectrogram frames, 0.41 / 0.78 s): decoded
# whole, longer audio drifts 1-2 dB in level and loses up to 1.6 dB of magnitude SNR
# (docs/training.md, "Decoding at the training context"), so `lincae` and the evaluation recipes
# encode it in chunks of this length (0.2 s and 0.75 s score lower: "Phase 4").
SMALL_CHUNK_SECONDS = 0.4

BUILTIN_PRESETS = {
    "lin_cae": dict(
        description="Official Lin-CAE (gain annealing), 58.2 M parameters, 64 latent channels.",
        config=dict(scale_factor=33.0),
        official_folder="0a3afbec_weights",
        training_mode="lin_cae",
    ),
    "lin_cae_2": dict(
        description="Official Lin-CAE-2 (constant gain range [0, 3]), 58.2 M parameters.",
        config=dict(scale_factor=40.0, mode="lin_cae_2"),
        official_folder="2f4c6d21_weights",
        training_mode="lin_cae_2",
    ),
    "m2l": dict(
        description="Official Music2Latent baseline retrained by the Lin-CAE authors, 58.2 M parameters.",
        config=dict(scale_factor=15.0, mode="m2l"),
        official_folder="1511f18a_weights",
        training_mode="m2l",
    ),
    "lin_cae_tiny": dict(
        description="Tiny Lin-CAE architecture (~0.56 M parameters) for tests and demos.",
        config=dict(TINY_ARCHITECTURE),
        official_folder=None,
        training_mode="lin_cae",
    ),
    "lin_cae_small": dict(
        description="Small Lin-CAE (2.2 M parameters, 64 latent channels) trained offline; weights in saved_models/.",
        config=dict(SMALL_ARCHITECTURE, mode="lin_cae"),
        official_folder=None,
        training_mode="lin_cae",
        chunk_seconds=SMALL_CHUNK_SECONDS,
    ),
    "m2l_small": dict(
        description="Small Music2Latent baseline (same architecture, data and budget as lin_cae_small, no Lin-CAE augmentation).",
        config=dict(SMALL_ARCHITECTURE, mode="m2l"),
        official_folder=None,
        training_mode="m2l",
        chunk_seconds=SMALL_CHUNK_SECONDS,
    ),
}


def list_presets():
    """Names of the built-in presets."""
    return sorted(BUILTIN_PRESETS)


def recommended_chunk_seconds(preset):
    """Chunk length in seconds for encoding long audio with the built-in `preset` (a name), or
    None where the preset names none (the official models: not measured here)."""
    return BUILTIN_PRESETS.get(preset, {}).get("chunk_seconds")


def official_scale_factor(src_dir):
    """Official latent scale for a release folder (by its hash in the name), else 1.0."""
    base = os.path.basename(os.path.normpath(src_dir))
    for preset in BUILTIN_PRESETS.values():
        folder = preset["official_folder"]
        if folder and folder.split("_")[0] in base:
            return float(preset["config"]["scale_factor"])
    return 1.0
