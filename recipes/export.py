"""Export a Lin-CAE preset as a TensorFlow Serving SavedModel.

    python recipes/export.py PRESET OUT_DIR [--name lincae] [--version 1] [--steps 1] [--overwrite] [--debug]

writes `OUT_DIR/<name>/<version>/` with the signatures `encode`, `decode`,
`autoencode`, `separate` and `serving_default` (= `autoencode`); serve it with
`tensorflow_model_server --model_base_path=/abs/OUT_DIR/<name>` (docs/serving.md).
The preset may come from any backend; the export runs under TensorFlow: with
another `KERAS_BACKEND` this script runs itself again with
`KERAS_BACKEND=tensorflow`. A refused or invalid export is one line
`export.py: error: ...` with exit status 2 (`--debug`: with the traceback).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "export.py"


def main(argv=None):
    """Export under TensorFlow (in a subprocess when KERAS_BACKEND is another); -> exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    entry.prepare(PROG, debug=debug)  # KERAS_BACKEND=tensorflow
    from keras_lincae import export

    args = export._parser().parse_args(argv)
    entry.check_writable_folder(os.path.join(args.out_dir, args.name), "OUT_DIR")
    return export.main(argv)


if __name__ == "__main__":
    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        sys.exit(subprocess.call([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env))
    sys.exit(entry.run(main, PROG))
