"""Export a Lin-CAE preset as a TF Serving SavedModel, an ONNX pair or a LiteRT model.

    python recipes/export.py PRESET OUT_DIR [--format saved_model|onnx|litert] [--name lincae]
        [--version 1] [--steps 1] [--overwrite] [--debug]

writes `OUT_DIR/<name>/<version>/`: `--format saved_model` (default) the signatures
`encode`, `decode`, `autoencode`, `separate` and `serving_default` (= `autoencode`),
served by `tensorflow_model_server --model_base_path=/abs/OUT_DIR/<name>`; `onnx`
`encode.onnx` and `decode.onnx`; `litert` `lincae.tflite` with the signatures `encode`
and `decode` (ONNX and LiteRT: 1-step decode, dynamic batch and length). See
docs/serving.md. The preset may come from any backend; the export runs under
TensorFlow whatever `KERAS_BACKEND` says. The arguments and OUT_DIR are checked before
Keras loads; a refused or invalid export is one line `export.py: error: ...` with exit
status 2 (`--debug`: with the traceback). The logic lives in `keras_lincae.export`.
"""

import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import export  # noqa: E402  (imports no Keras)

PROG = "export.py"


def main(argv=None):
    """Run the recipe; returns the exit status (2 for a refused or invalid export)."""
    return export.main(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
