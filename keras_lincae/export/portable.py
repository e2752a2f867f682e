"""ONNX and LiteRT exports: `encode` and the 1-step `decode`, dynamic batch and length.

| function | inputs                                         | outputs                           |
|----------|------------------------------------------------|-----------------------------------|
| `encode` | `audio (B, N)`, `N >= n_fft`                   | `latents (B, L, C)`               |
| `decode` | `latents (B, L, C)`, `noise (B, td*L, 2*hop, 2)` | `audio (B, (td*L-1)*hop + n_fft)` |

ONNX: `encode.onnx` and `decode.onnx` (tf2onnx). LiteRT: `lincae.tflite` with the
signatures `encode` and `decode` (TFLite builtin ops only, so the plain LiteRT
interpreter runs it; the weights are frozen into constants first). Neither format has
an FFT that fits the frontend (tf2onnx converts no `IRFFT`, TFLite has none), so the
model is traced with `keras.ops.rfft` / `irfft` as products with DFT matrices
(`dft_as_matmul`; float32, ~4e-7 relative).
Inputs are not checked in the graph. Needs the TensorFlow backend.
"""

import contextlib
import os
import tempfile

import keras
import numpy as np
from keras import ops

ONNX_FILES = {"encode": "encode.onnx", "decode": "decode.onnx"}
LITERT_FILE = "lincae.tflite"


def rfft_by_matmul(x, fft_length=None):
    """`keras.ops.rfft` of real `(..., n)` as one matrix product: `(real, imag)`, each `(..., n//2 + 1)`."""
    n_fft = int(fft_length or x.shape[-1])
    bins = n_fft // 2 + 1
    angles = _dft_angles(n_fft, bins)
    matrix = np.concatenate([np.cos(angles), -np.sin(angles)], axis=1).astype("float32")
    spectrum = ops.matmul(x, matrix)
    return spectrum[..., :bins], spectrum[..., bins:]


def irfft_by_matmul(x, fft_length=None):
    """`keras.ops.irfft` of `(real, imag)`, each `(..., bins)`, as one matrix product: `(..., fft_length)`."""
    real, imag = x
    bins = int(real.shape[-1])
    n_fft = int(fft_length or 2 * (bins - 1))
    angles = _dft_angles(n_fft, bins).T
    weight = np.full((bins, 1), 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0  # the Nyquist bin counts once
    matrix = np.concatenate([weight * np.cos(angles), -weight * np.sin(angles)], axis=0) / n_fft
    return ops.matmul(ops.concatenate([real, imag], axis=-1), matrix.astype("float32"))


def _dft_angles(n_fft, bins):
    """`2 pi (n k mod n_fft) / n_fft`, `(n_fft, bins)`, in float64 (exact phases for large `n k`)."""
    n, k = np.arange(n_fft)[:, None], np.arange(bins)[None, :]
    return 2.0 * np.pi * ((n * k) % n_fft) / n_fft


@contextlib.contextmanager
def dft_as_matmul():
    """Within the block, `keras.ops.rfft` / `irfft` (what the frontend calls) are DFT matrix products."""
    saved = ops.rfft, ops.irfft
    ops.rfft, ops.irfft = rfft_by_matmul, irfft_by_matmul
    try:
        yield
    finally:
        ops.rfft, ops.irfft = saved


def portable_functions(model):
    """`{name: (fn, input_signature)}` for `encode` and the 1-step `decode` (dict outputs)."""
    import tensorflow as tf

    hop, channels = model.hop_size, model.latent_channels

    def encode(audio):
        return {"latents": model(audio, training=False)}

    def decode(latents, noise):
        return {"audio": model.sample(latents, [noise])}

    return {
        "encode": (encode, [tf.TensorSpec((None, None), tf.float32, name="audio")]),
        "decode": (decode, [
            tf.TensorSpec((None, None, channels), tf.float32, name="latents"),
            tf.TensorSpec((None, None, 2 * hop, model.data_channels), tf.float32, name="noise"),
        ]),
    }


class _Endpoint(keras.Model):
    """One portable function as a Keras model (what `tf2onnx.convert.from_keras` converts)."""

    def __init__(self, lincae, fn, **kwargs):
        super().__init__(**kwargs)
        self.lincae = lincae
        self.fn = fn

    def call(self, *inputs, training=None):
        """`inputs`: the input tensors, positional or as one list (tf2onnx traces both ways)."""
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = inputs[0]
        return self.fn(*inputs)


def write_onnx(model, directory, opset=None):
    """Write `encode.onnx` and `decode.onnx` of `model` to `directory`; each is checked by `onnx.checker`."""
    try:
        import onnx
        import tf2onnx
        import tf2onnx.optimizer  # tf2onnx loads its submodules lazily
    except ImportError as error:
        raise ImportError(f"the onnx export needs tf2onnx and onnx (pip install 'keras-lincae[export]'): {error}")
    # tf2onnx's back-to-back Reshape merge mis-handles the `0` (copy this axis) of the
    # shapes it writes itself: the encoder's GroupNorm + flatten would get the wrong shape.
    optimizers = {k: v for k, v in tf2onnx.optimizer._get_optimizers().items() if k != "remove_back_to_back"}
    with dft_as_matmul():
        for name, (fn, signature) in portable_functions(model).items():
            path = os.path.join(directory, ONNX_FILES[name])
            tf2onnx.convert.from_keras(
                _Endpoint(model, fn, name=name), signature, opset=opset, optimizers=optimizers, output_path=path
            )
            try:
                onnx.checker.check_model(path, full_check=True)
            except Exception as error:  # tf2onnx leaves the ops it cannot convert in the graph
                raise RuntimeError(f"the ONNX conversion of {name} is invalid: {str(error).splitlines()[0]}")


def write_litert(model, directory):
    """Write `lincae.tflite` (signatures `encode`, `decode`; TFLite builtin ops only) to `directory`."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Converted with its variables, the model keeps them as TFLite resource variables that
    # the interpreter never initialises (NaN outputs), so each function is frozen first and
    # reaches the converter through a SavedModel without variables.
    signatures = {}
    with dft_as_matmul():
        for name, (fn, signature) in portable_functions(model).items():
            traced = tf.function(fn, autograph=False).get_concrete_function(*signature)
            call = _packed(convert_variables_to_constants_v2(traced), traced.structured_outputs)
            signatures[name] = tf.function(call, input_signature=signature, autograph=False).get_concrete_function()
    with tempfile.TemporaryDirectory() as saved:
        # The frozen graphs keep the custom-gradient ops of `silu`, which SavedModel cannot save.
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        tf.saved_model.save(tf.Module(), saved, signatures=signatures, options=options)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    with open(os.path.join(directory, LITERT_FILE), "wb") as f:
        f.write(flatbuffer)


def _packed(frozen, structure):
    """`frozen` (a frozen concrete function, flat outputs) returning the nest `structure`."""
    import tensorflow as tf

    return lambda *inputs: tf.nest.pack_sequence_as(structure, frozen(*inputs))
