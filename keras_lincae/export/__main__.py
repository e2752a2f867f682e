"""`python -m keras_lincae.export PRESET OUT_DIR [--format saved_model|onnx|litert] ...`."""

import sys

from keras_lincae.export.cli import main

sys.exit(main())
