"""How the recipes chunk clips for scoring: the ``--chunk-seconds`` flag (imports no Keras)."""

from __future__ import annotations

import math

from keras_lincae import presets


def add_chunk_seconds_flag(parser):
    """Add ``--chunk-seconds`` ('auto', 0 or seconds; parsed by ``chunk_seconds_for``)."""
    parser.add_argument(
        "--chunk-seconds", default="auto",
        help="encode and decode each clip in crossfaded chunks of this many seconds, as lincae does; "
             "'auto' (default): the built-in preset's recommended length (0.4 for lin_cae_small and "
             "m2l_small), else the whole clip; 0: the whole clip in one call")


def chunk_seconds_for(preset, setting):
    """The chunk span for ``preset`` under the flag value ``setting``: float, or None for whole
    clips. Raises ValueError naming the flag when ``setting`` is not 'auto', 0 or a positive
    number."""
    if setting == "auto":
        return presets.recommended_chunk_seconds(preset)
    try:
        seconds = float(setting)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"--chunk-seconds must be 'auto', 0 or a positive number, got {setting!r}")
    return seconds or None
