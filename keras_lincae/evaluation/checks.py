"""Input checks shared by the metric functions: float64 arrays, batch shapes, model callables."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``x`` holds NaN or inf."""
    if not np.all(np.isfinite(x)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)."
        )


def float_array(x, name: str) -> np.ndarray:
    """``x`` as a finite float64 array (``ValueError`` otherwise)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} cannot be converted to a float array: {err}") from None
    check_finite(arr, name)
    return arr


def audio_batch(x, name: str) -> tuple[np.ndarray, bool]:
    """Return ``(array (batch, samples), was_1d)`` after checks."""
    arr = float_array(x, name)
    if arr.ndim == 1:
        arr, was_1d = arr[None, :], True
    elif arr.ndim == 2:
        was_1d = False
    else:
        raise ValueError(
            f"{name} must have shape (batch, samples) or (samples,), got {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    return arr, was_1d


def audio_pair(estimate, reference):
    """``(estimate, reference, was_1d)`` as ``(batch, samples)`` arrays of one shape."""
    est, est_1d = audio_batch(estimate, "estimate")
    ref, ref_1d = audio_batch(reference, "reference")
    if est.shape != ref.shape:
        raise ValueError(
            "estimate and reference must have the same shape, got "
            f"{np.shape(estimate)} and {np.shape(reference)}."
        )
    return est, ref, est_1d and ref_1d


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` if ``a`` and ``b`` differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}."
        )


def unbatch(values: np.ndarray, was_1d: bool):
    """``values[0]`` for an input that was 1-D, else ``values``."""
    return values[0] if was_1d else values


def check_audible_reference(ref: np.ndarray) -> None:
    """Raise ``ValueError`` for an all-zero reference ``(batch, samples)`` row."""
    energy = np.sum(ref**2, axis=-1)
    silent = np.flatnonzero(energy == 0.0)
    if silent.size:
        raise ValueError(
            "reference is silent (all zeros) for batch item(s) "
            f"{silent.tolist()}; SI-SDR/SNR are undefined there. Drop silent clips "
            "before scoring."
        )


def gain_array(gains: Sequence[float]) -> np.ndarray:
    """``gains`` as a non-empty finite float64 vector."""
    g = np.asarray(gains, dtype=np.float64).reshape(-1)
    if g.size == 0:
        raise ValueError("gains must contain at least one value.")
    check_finite(g, "gains")
    return g


def call_batched(fn: ArrayFn, x: np.ndarray, name: str) -> np.ndarray:
    """``fn(x)`` as float64, checked to keep the batch axis of ``x`` first."""
    out = float_array(fn(x), name)
    if out.ndim == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must keep the batch axis first (batch {x.shape[0]}), "
            f"got shape {out.shape}."
        )
    return out


def decode_to(decode: ArrayFn, z: np.ndarray, n_samples: int | None, name: str):
    """Decode ``z`` to (batch, samples), trimmed to ``n_samples`` if given."""
    y = call_batched(decode, z, name)
    if y.ndim != 2:
        raise ValueError(f"{name} must return audio of shape (batch, samples), got {y.shape}.")
    if n_samples is not None:
        if y.shape[1] < n_samples:
            raise ValueError(
                f"{name} returned {y.shape[1]} samples, fewer than the "
                f"{n_samples} of the reference."
            )
        y = y[:, :n_samples]
    return y
