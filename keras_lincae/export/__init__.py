"""Export a Lin-CAE model for serving: a TF Serving SavedModel, ONNX or LiteRT (`docs/serving.md`).

`export(preset, out_dir, format=...)` writes `out_dir/<name>/<version>/` atomically with
`lincae_export.json` (the numbers a client needs) beside the model. Modules: `common`
(checks, info, atomic write), `saved_model`, `portable` (ONNX, LiteRT), `cli` (`export`
and the command line, `python -m keras_lincae.export`). Importing this package imports no Keras.
"""

from keras_lincae.export.cli import build_parser, export, export_saved_model, main
from keras_lincae.export.common import (
    EXPORT_INFO_FILE,
    FORMATS,
    check_export_arguments,
    export_info,
    noise_frames,
)
