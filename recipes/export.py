"""Export a Lin-CAE preset as a TensorFlow Serving SavedModel.

    python recipes/export.py PRESET OUT_DIR [--name lincae] [--version 1] [--steps 1] [--overwrite]

writes `OUT_DIR/<name>/<version>/` with the signatures `encode`, `decode`,
`autoencode`, `separate` and `serving_default` (= `autoencode`); serve it with
`tensorflow_model_server --model_base_path=/abs/OUT_DIR/<name>` (docs/serving.md).
The preset may come from any backend; the export runs under TensorFlow: with
another `KERAS_BACKEND` this script runs itself again with
`KERAS_BACKEND=tensorflow`. Exit status 2 for a refused or invalid export.
"""

import os
import subprocess
import sys

if __name__ == "__main__" and os.environ.get("KERAS_BACKEND") != "tensorflow":
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    sys.exit(subprocess.call([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env))

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
