"""A persistent compilation cache for test and benchmark processes (not needed for training itself)."""

import contextlib
import os
import tempfile

from keras_lincae.backend_dispatch import persistent_compilation_cache


@contextlib.contextmanager
def jax_compilation_cache(directory=None):
    """On JAX, turn on the persistent XLA compilation cache for this process and yield the
    environment variables that turn it on in subprocesses ({} on other backends).

    Repeated compilations of the same training step (a run, its killed twin, its resumption)
    then cost seconds instead of a minute. `directory` defaults to
    `$KERAS_LINCAE_JAX_CACHE` or `<tmp>/keras_lincae_jax_cache`.
    """
    directory = directory or os.environ.get("KERAS_LINCAE_JAX_CACHE") or os.path.join(
        tempfile.gettempdir(), "keras_lincae_jax_cache")
    os.makedirs(directory, exist_ok=True)
    with persistent_compilation_cache(directory) as env:
        yield env
