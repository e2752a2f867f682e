"""`export(preset, out_dir, format=...)` and its command line (`python -m keras_lincae.export`).

Every format is written under TensorFlow: given a preset on another backend, `export`
runs itself in a `KERAS_BACKEND=tensorflow` subprocess (presets are backend-neutral).
The command line checks its arguments and OUT_DIR before importing Keras. Importing
this module imports no Keras.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

from keras_lincae import entry
from keras_lincae.export.common import FORMATS, check_export_arguments, export_info, write_atomically

PROG = "python -m keras_lincae.export"
_ERROR_TYPES = {  # errors of the export subprocess, raised again with their type in the caller
    e.__name__: e for e in (ValueError, TypeError, FileExistsError, FileNotFoundError, NotADirectoryError,
                            PermissionError, OSError, ImportError, MemoryError, RuntimeError)
}


def export(preset, out_dir, format="saved_model", name="lincae", version=1, steps=1, overwrite=False):
    """Export a Lin-CAE model to `out_dir/name/version` (written atomically).

    Args:
        preset: a preset name or directory (anything `LinCAE.from_preset` accepts),
            or a `LinCAE` instance when the TensorFlow backend is active.
        out_dir: str. The model base path is `out_dir/name`.
        format: "saved_model" (TF Serving: `encode`, `decode`, `autoencode`,
            `separate`), "onnx" (`encode.onnx`, `decode.onnx`) or "litert"
            (`lincae.tflite`, signatures `encode`, `decode`).
        name: str, "lincae". Model name (the directory under `out_dir`).
        version: int, 1. Version directory.
        steps: int, 1. Sampling steps of the decoding signatures (saved_model only).
        overwrite: bool, False. Replace an existing non-empty version directory.

    Returns:
        The absolute path of the version directory.
    """
    import keras

    version_dir = check_export_arguments(out_dir, name, version, steps, overwrite, export_format=format)
    if keras.backend.backend() != "tensorflow":
        if not isinstance(preset, (str, os.PathLike)):
            raise TypeError(
                "Exporting a model object needs KERAS_BACKEND=tensorflow; on the "
                f"{keras.backend.backend()} backend save it with model.save_to_preset(dir) "
                "and pass the directory"
            )
        from keras_lincae import LinCAE

        LinCAE.from_preset(preset)  # a missing or corrupt preset fails here, before TF starts
        _export_in_subprocess(preset, out_dir, format, name, version, steps, overwrite)
        return version_dir

    # Imported only now: these modules import Keras, whose backend is settled by here.
    from keras_lincae import LinCAE
    from keras_lincae.export import portable, saved_model

    model = preset if isinstance(preset, LinCAE) else LinCAE.from_preset(preset)
    if not model.built:  # variables must exist before tracing
        model.build()
    info = export_info(model, format, steps)
    if isinstance(preset, (str, os.PathLike)):
        info["preset"] = os.fspath(preset)
    if format == "saved_model":
        return write_atomically(version_dir, lambda d: saved_model.write_saved_model(model, d, steps), info,
                                info_dir="assets.extra")
    write = portable.write_onnx if format == "onnx" else portable.write_litert
    return write_atomically(version_dir, lambda d: write(model, d), info)


def export_saved_model(preset, out_dir, name="lincae", version=1, steps=1, overwrite=False):
    """`export(..., format="saved_model")`: a TF Serving SavedModel in `out_dir/name/version`.

    Examples:
    ```python
    from keras_lincae.export import export_saved_model
    export_saved_model("saved_models/my_preset", "/srv/models")  # /srv/models/lincae/1
    ```
    """
    return export(preset, out_dir, "saved_model", name=name, version=version, steps=steps, overwrite=overwrite)


def _export_in_subprocess(preset, out_dir, export_format, name, version, steps, overwrite):
    """Run `python -m keras_lincae.export` under TensorFlow; re-raise its error with its type."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        error_file = os.path.join(tmp, "error.json")
        command = [
            sys.executable, "-m", "keras_lincae.export", os.fspath(preset), os.fspath(out_dir),
            "--format", export_format, "--name", name, "--version", str(version), "--steps", str(steps),
            "--error-file", error_file,
        ] + (["--overwrite"] if overwrite else [])
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if os.path.isfile(error_file):
            with open(error_file) as f:
                error = json.load(f)
            raise _ERROR_TYPES.get(error["type"], RuntimeError)(error["message"])
        raise RuntimeError(
            f"The TensorFlow export subprocess failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )


def build_parser(prog=PROG):
    """The command line's parser (one-line usage errors, `--debug`); imports no Keras."""
    parser = entry.ArgumentParser(
        prog=prog, description="Export a Lin-CAE preset (SavedModel, ONNX or LiteRT) to OUT_DIR/NAME/VERSION."
    )
    parser.add_argument("preset", help="preset name or directory (from any backend)")
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="model base path parent: the export goes to OUT_DIR/NAME/VERSION")
    parser.add_argument("--format", choices=FORMATS, default="saved_model",
                        help="saved_model (TF Serving; default), onnx or litert (encode + 1-step decode)")
    parser.add_argument("--name", default="lincae", help="model name (default: lincae)")
    parser.add_argument("--version", type=int, default=1, help="version directory (default: 1)")
    parser.add_argument("--steps", type=int, default=1, help="decoder sampling steps (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty version")
    parser.add_argument("--error-file", help=argparse.SUPPRESS)
    entry.add_flags(parser, backend=False)
    return parser


def main(argv=None, prog=PROG):
    """Command line entry point; returns the exit status (2 for a refused or invalid export)."""
    args = build_parser(prog).parse_args(argv)
    return entry.run(lambda: _export_command(args, prog), prog)


_NEEDS = {"saved_model": ("tensorflow",), "onnx": ("tensorflow", "tf2onnx", "onnx"), "litert": ("tensorflow",)}


def _export_command(args, prog):
    """Check the arguments and OUT_DIR, then export under TensorFlow; print the version directory."""
    entry.prepare(prog, debug=args.debug, needs_keras=False)
    try:
        check_export_arguments(args.out_dir, args.name, args.version, args.steps, args.overwrite,
                               what="OUT_DIR", export_format=args.format)
        missing = [m for m in _NEEDS[args.format] if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(
                f"the {args.format} export needs {' and '.join(missing)} (pip install 'keras-lincae[export]')"
            )
        entry.prepare(prog, "tensorflow", args.debug)
        path = export(args.preset, args.out_dir, format=args.format, name=args.name, version=args.version,
                      steps=args.steps, overwrite=args.overwrite)
    except Exception as error:
        if args.error_file and entry.user_error_message(error) is not None:
            with open(args.error_file, "w") as f:
                json.dump({"type": type(error).__name__, "message": str(error)}, f)
        raise
    print(path)
    return 0
