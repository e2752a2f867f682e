"""Serve an exported SavedModel with TensorFlow alone: Keras and keras_lincae are unimportable.

Run by path in an isolated interpreter (not with `-m`, which would import keras_lincae):
`python -I keras_lincae/testing/tf_only_client.py INPUTS.npz MODEL_DIR OUTPUTS.npz REPORT.json CASE...`.
INPUTS holds `<case>/<name>` arrays; OUTPUTS gets `<case>/<signature>` results, and REPORT the
errors of malformed requests (first case), the signature names and any Keras module imported.
"""

import importlib.abc
import importlib.machinery
import json
import sys

BLOCKED = ("keras", "keras_lincae", "tf_keras")


class NotInstalled(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the BLOCKED packages and fails to load them, as if they were not installed
    (TensorFlow imports Keras when it is installed, and goes on without it)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, self)  # no origin: "not on disk"

    def create_module(self, spec):
        raise ImportError(spec.name + " is blocked: TensorFlow alone must serve the model")

    def exec_module(self, module):
        pass


def serve(inputs, served, cases):
    """`{<case>/<signature>: output}` of every signature for each case."""
    import tensorflow as tf

    outputs = {}
    for case in cases:
        def arg(name):
            return tf.constant(inputs[case + "/" + name])

        outputs[case + "/encode"] = served.signatures["encode"](audio=arg("padded"))["latents"]
        outputs[case + "/decode"] = served.signatures["decode"](latents=arg("latents"), noise=arg("decode_noise"))["audio"]
        outputs[case + "/autoencode"] = served.signatures["autoencode"](audio=arg("audio"), noise=arg("noise"))["audio"]
        outputs[case + "/serving_default"] = served.signatures["serving_default"](
            audio=arg("audio"), noise=arg("noise"))["audio"]
        outputs[case + "/separate"] = served.signatures["separate"](
            mixture=arg("mixture"), accompaniment=arg("accompaniment"), noise=arg("noise"))["target"]
    return {k: v.numpy() for k, v in outputs.items()}


def malformed_request_errors(inputs, served, case):
    """`{label: "ErrorType: message" or None}` for requests with wrong ranks, shapes or values."""
    import numpy as np
    import tensorflow as tf

    audio, noise, latents = inputs[case + "/audio"], inputs[case + "/noise"], inputs[case + "/latents"]
    bad = dict(
        encode_rank3=("encode", dict(audio=audio[:, None])),
        encode_rank1=("encode", dict(audio=audio[0])),
        autoencode_noise_rank3=("autoencode", dict(audio=audio, noise=noise[..., 0])),
        decode_latents_rank2=("decode", dict(latents=latents[0], noise=inputs[case + "/decode_noise"])),
        decode_wrong_channels=("decode", dict(latents=latents[..., :-1], noise=inputs[case + "/decode_noise"])),
        encode_too_short=("encode", dict(audio=audio[:, :100])),
        autoencode_wrong_noise_length=("autoencode", dict(audio=audio, noise=noise[:, :-8])),
        separate_shape_mismatch=("separate", dict(mixture=audio, accompaniment=audio[:, :-1], noise=noise)),
        encode_nan=("encode", dict(audio=np.full_like(audio, np.nan))),
    )
    errors = {}
    for label, (name, kwargs) in bad.items():
        try:
            served.signatures[name](**{k: tf.constant(v) for k, v in kwargs.items()})
            errors[label] = None
        except Exception as error:  # noqa: BLE001 - the report records whatever TensorFlow raises
            errors[label] = type(error).__name__ + ": " + str(error)[:2000]
    return errors


def main(inputs_path, model_dir, outputs_path, report_path, *cases):
    sys.meta_path.insert(0, NotInstalled())
    import numpy as np
    import tensorflow as tf

    inputs = dict(np.load(inputs_path))
    served = tf.saved_model.load(model_dir)
    np.savez(outputs_path, **serve(inputs, served, cases))
    errors = malformed_request_errors(inputs, served, cases[0])
    modules = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    with open(report_path, "w") as f:
        json.dump(dict(modules=modules, errors=errors, signatures=sorted(served.signatures)), f)


if __name__ == "__main__":
    main(*sys.argv[1:])
