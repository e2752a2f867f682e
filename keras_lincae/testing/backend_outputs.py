"""Encode and decode fixed inputs with a preset on the current backend (cross-backend tests).

Usage: `python -m keras_lincae.testing.backend_outputs PRESET INPUTS.npz OUT.npz`. INPUTS holds
`audio`, `latents` and `noise`; OUT gets `latents = encode(audio)` and
`decoded = decode(latents, noise=noise)`.
"""

import sys

import numpy as np

from keras_lincae.testing.helpers import to_numpy


def backend_outputs(preset, inputs, out):
    """Write `encode`/`decode` results of `preset` on `inputs` (a .npz path) to `out`."""
    from keras_lincae import LinCAE

    data = np.load(inputs)
    model = LinCAE.from_preset(preset)
    np.savez(out, latents=to_numpy(model.encode(data["audio"])),
             decoded=to_numpy(model.decode(data["latents"], noise=data["noise"])))


if __name__ == "__main__":
    backend_outputs(*sys.argv[1:4])
