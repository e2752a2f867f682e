"""Latent arithmetic: mixing, volume and separation by adding, scaling and subtracting latents.

A Lin-CAE is trained so that its decoder is (approximately) linear in the latents `z = Enc(x)`
(scaled latents, as `LinCAE.encode` returns them):

- homogeneity: `Dec(a * z) ~= a * Dec(z)`, so `scale(z, a)` is a volume change by `a`;
- additivity: `Dec(z_u + z_v) ~= Dec(z_u) + Dec(z_v)` and `Enc(u + v) ~= Enc(u) + Enc(v)`, so
  `mix([z_u, z_v], [a, b])` decodes to about `a * u + b * v`;
- together: `separate(z_mix, z_accompaniment) = z_mix - z_accompaniment` decodes to about the
  remaining source (e.g. vocals).

Affine arithmetic: if the encoder maps silence to `z0 = Enc(0) != 0`, it is affine, not linear:
`z_u + z_v` then carries `z0` twice and `z_mix - z_acc` not at all. Every function takes
`origin=z0` (from `silence_latents`) and then works relative to it: `mix` returns
`z0 + sum_i g_i (z_i - z0)`, so `separate` returns `z_mix - z_acc + z0` and `scale` returns
`z0 + a (z - z0)`; the audio helpers take `affine=True`.

These are approximations that hold as well as the model learned them (a plain Music2Latent model
is far less linear than Lin-CAE); the functions here compute the exact latent combinations, and the
audio helpers encode every input, combine the latents and decode once — N sources cost N encodes
and a single decode instead of N decodes.

Latents may be backend tensors or arrays of the same shape (`LinCAE.encode` output), or
`ChunkedLatents` from `keras_lincae.long_audio.encode_long` with the same layout (same length,
chunking and channels); the result has the same kind.

Examples:
```python
from keras_lincae import LinCAE
from keras_lincae.arithmetic import mix, mix_audio

model = LinCAE.from_preset("lin_cae_tiny", load_weights=False)
z = mix([model.encode(vocals), model.encode(drums)], gains=[1.0, 0.5])
audio = model.decode(z, seed=0)
same = mix_audio(model, [vocals, drums], gains=[1.0, 0.5], seed=0)  # every input sample back
```
"""

import math
import numbers

import numpy as np

from keras_lincae.long_audio import ChunkedLatents, decode_long, encode_long

__all__ = ["mix", "mix_audio", "scale", "scale_audio", "separate", "separate_audio", "silence_latents"]


def _check_gain(gain, what="gain"):
    if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, numbers.Real):
        if isinstance(gain, np.ndarray) and gain.ndim == 0 and gain.dtype.kind in "fiu":
            gain = gain.item()
        else:
            raise ValueError(f"{what} must be a real number, got {gain!r}")
    gain = float(gain)
    if not math.isfinite(gain):
        raise ValueError(f"{what} must be finite, got {gain}")
    return gain


def _check_gains(gains, count):
    if gains is None:
        return [1.0] * count
    if isinstance(gains, (str, bytes)) or not hasattr(gains, "__len__"):
        raise ValueError(f"gains must be a sequence of {count} numbers, got {gains!r}")
    gains = list(np.asarray(gains).reshape(-1)) if isinstance(gains, np.ndarray) else list(gains)
    if len(gains) != count:
        raise ValueError(f"got {len(gains)} gains for {count} latents")
    return [_check_gain(g, f"gains[{i}]") for i, g in enumerate(gains)]


def _shape(latents):
    return tuple(int(d) for d in latents.shape)


def _check_latents(latents, what):
    """-> float32 tensor (or `ChunkedLatents`), raising ValueError for non-finite or empty latents."""
    if isinstance(latents, ChunkedLatents):
        latents.check()
        return latents
    from keras import ops

    try:
        tensor = ops.convert_to_tensor(latents)
    except Exception as error:  # ragged lists, strings, ...
        raise ValueError(f"{what} cannot be read as an array: {error}") from error
    if "float" not in str(tensor.dtype):
        raise ValueError(f"{what} must be floating point, got dtype {tensor.dtype}")
    if len(tensor.shape) < 2 or min(_shape(tensor)) < 1:
        raise ValueError(f"{what} must be non-empty latents (batch, frames, C), got shape {_shape(tensor)}")
    if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(tensor)))):
        raise ValueError(f"{what} contain NaN or infinite values")
    return ops.cast(tensor, "float32")


def _check_same(latents_list, names):
    first = latents_list[0]
    chunked = [isinstance(z, ChunkedLatents) for z in latents_list]
    if any(chunked) and not all(chunked):
        raise ValueError("cannot combine ChunkedLatents with plain latents; encode all inputs the same way")
    for name, z in zip(names[1:], latents_list[1:]):
        if _shape(z.latents if chunked[0] else z) != _shape(first.latents if chunked[0] else first):
            raise ValueError(
                f"latent shapes differ: {names[0]} {_shape(first.latents if chunked[0] else first)} vs "
                f"{name} {_shape(z.latents if chunked[0] else z)}"
            )
        if chunked[0] and z.layout() != first.layout():
            raise ValueError(
                f"{names[0]} and {name} were chunked differently (length, chunk, step, rate, channels): "
                f"{first.layout()} vs {z.layout()}"
            )


def silence_latents(model, like):
    """`Enc(silence)` shaped like `like` (latents of `model.encode`, or `ChunkedLatents`).

    The origin of affine latent arithmetic (module docstring). For `ChunkedLatents` the silence
    is encoded with the same chunking.
    """
    if isinstance(like, ChunkedLatents):
        shape = (1,) * (like.latents.ndim - 4) + (1, like.length)
        silence = encode_long(model, np.zeros(shape, np.float32), like=like)
        return like.with_latents(np.broadcast_to(silence.latents, like.latents.shape))
    from keras import ops

    shape = _shape(_check_latents(like, "like"))
    zero = model.encode(np.zeros((1, model.decoded_length(shape[-2])), np.float32))
    return ops.broadcast_to(ops.reshape(zero, (1,) * (len(shape) - 2) + tuple(zero.shape[-2:])), shape)


def mix(latents_list, gains=None, origin=None):
    """Weighted sum of latents, `sum_i gains[i] * latents_list[i]` (additivity + homogeneity).

    Args:
        latents_list: list or tuple of latents of one shape (tensors/arrays, or `ChunkedLatents`
            of one layout).
        gains: sequence of finite numbers, one per latents; None gives all ones.
        origin: optional `silence_latents` of the same shape: the sum is taken relative to it,
            `origin + sum_i gains[i] * (latents_list[i] - origin)` (affine arithmetic).
    Returns:
        The mixed latents, same kind and shape as the inputs.
    Raises:
        ValueError: empty list, mismatched shapes or chunking, wrong number of gains, NaN/inf gains
        or latents.
    """
    if not isinstance(latents_list, (list, tuple)):
        raise ValueError(f"latents_list must be a list or tuple of latents, got {type(latents_list).__name__}")
    if not latents_list:
        raise ValueError("latents_list is empty: nothing to mix")
    gains = _check_gains(gains, len(latents_list))
    if origin is not None:  # origin + sum g_i (z_i - origin) = sum g_i z_i + (1 - sum g_i) origin
        return mix(list(latents_list) + [origin], gains + [1.0 - sum(gains)])
    names = [f"latents_list[{i}]" for i in range(len(latents_list))]
    checked = [_check_latents(z, n) for z, n in zip(latents_list, names)]
    _check_same(checked, names)
    if isinstance(checked[0], ChunkedLatents):
        total = sum(np.float32(g) * z.latents for g, z in zip(gains, checked))
        return checked[0].with_latents(total)
    total = checked[0] * gains[0]
    for g, z in zip(gains[1:], checked[1:]):
        total = total + z * g
    return total


def scale(latents, gain, origin=None):
    """`gain * latents`: a volume change by `gain` through homogeneity, `Dec(a z) ~= a Dec(z)`.

    With `origin` (`silence_latents`): `origin + gain * (latents - origin)`.
    """
    return mix([latents], [_check_gain(gain)], origin)


def separate(mix_latents, other_latents, origin=None):
    """`mix_latents - other_latents`: decodes to about `mixture - other` by additivity.

    With `other_latents` the latents of the accompaniment (everything but one stem), the result
    decodes to about the remaining stem. Shapes (and chunk layouts) must match. With `origin`
    (`silence_latents`): `mix_latents - other_latents + origin`.
    """
    return mix([mix_latents, other_latents], [1.0, -1.0], origin)


# ------------------------------------------------------------------------------ audio helpers


def _audio_list(audios, what):
    if not isinstance(audios, (list, tuple)) or not audios:
        raise ValueError(f"{what} must be a non-empty list or tuple of audio arrays")
    out = []
    for i, audio in enumerate(audios):
        if not isinstance(audio, np.ndarray):
            from keras import ops

            audio = ops.convert_to_numpy(audio)
        if audio.ndim not in (2, 3):
            raise ValueError(
                f"{what}[{i}] must have shape (batch, samples) or (batch, channels, samples), got {audio.shape}"
            )
        if audio.dtype.kind != "f":
            raise ValueError(f"{what}[{i}] must be floating point, got dtype {audio.dtype}")
        if audio.shape[-1] < 1:
            raise ValueError(f"{what}[{i}] is empty: 0 samples")
        if not np.all(np.isfinite(audio)):
            raise ValueError(f"{what}[{i}] contains NaN or infinite values")
        out.append(audio)
    leading = {a.shape[:-1] for a in out}
    if len(leading) > 1:
        raise ValueError(f"{what} differ in batch/channel shape: {sorted(leading)}")
    return out


def _pad_to(audio, length):
    if audio.shape[-1] == length:
        return audio
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])])


def mix_audio(model, audios, gains=None, steps=1, seed=None, chunk_seconds=None, overlap=0.25,
              batch_size=1, progress=None, affine=False):
    """Mix audio through latent space: encode every input, `mix` the latents, decode once.

    Relies on additivity and homogeneity (module docstring): the output approximates
    `sum_i gains[i] * audios[i]`, and equals `decode_long` of the mixed latents exactly.

    Args:
        model: a `LinCAE`.
        audios: list of float audio, `(batch, samples)` or `(batch, channels, samples)`, one
            batch/channel shape; shorter inputs are zero-padded at the end to the longest.
        gains: one finite number per input, None for all ones.
        steps, seed: decoding as in `LinCAE.decode` (`seed` None draws fresh noise).
        chunk_seconds, overlap, batch_size, progress: as in `encode_long` (None: one chunk).
        affine: bool, False. Mix relative to `Enc(silence)` (`silence_latents`).
    Returns:
        float32 NumPy audio shaped like the longest input.
    """
    audios = _audio_list(audios, "audios")
    gains = _check_gains(gains, len(audios))
    length = max(a.shape[-1] for a in audios)
    latents = [
        encode_long(model, _pad_to(a, length), chunk_seconds, overlap, batch_size, progress) for a in audios
    ]
    origin = silence_latents(model, latents[0]) if affine else None
    return decode_long(model, mix(latents, gains, origin), steps=steps, seed=seed, batch_size=batch_size,
                       progress=progress)


def scale_audio(model, audio, gain, steps=1, seed=None, chunk_seconds=None, overlap=0.25, batch_size=1,
                progress=None, affine=False):
    """Change volume in latent space: encode, multiply the latents by `gain`, decode.

    Relies on homogeneity, `Dec(a z) ~= a Dec(z)`: the output approximates `gain * audio`.
    Arguments as in `mix_audio`; returns audio shaped like `audio`.
    """
    gain = _check_gain(gain)
    return mix_audio(model, [audio], [gain], steps, seed, chunk_seconds, overlap, batch_size, progress, affine)


def separate_audio(model, mixture, accompaniment, steps=1, seed=None, chunk_seconds=None, overlap=0.25,
                   batch_size=1, progress=None, affine=False):
    """Separate by subtraction: decode `Enc(mixture) - Enc(accompaniment)` once.

    Relies on additivity: if `mixture = target + accompaniment`, the output approximates `target`.
    `accompaniment` has the mixture's batch/channel shape and at most its length (a shorter one
    is zero-padded). Other arguments as in `mix_audio`; returns audio shaped like `mixture`.
    """
    mixture, accompaniment = _audio_list([mixture, accompaniment], "[mixture, accompaniment]")
    if accompaniment.shape[-1] > mixture.shape[-1]:
        raise ValueError(
            f"accompaniment is longer than the mixture ({accompaniment.shape[-1]} > {mixture.shape[-1]} samples)"
        )
    return mix_audio(model, [mixture, accompaniment], [1.0, -1.0], steps, seed, chunk_seconds, overlap,
                     batch_size, progress, affine)
