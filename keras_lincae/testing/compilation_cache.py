"""Test helpers for training runs (not needed for training itself)."""

import contextlib
import os
import tempfile

import keras


@contextlib.contextmanager
def jax_compilation_cache(directory=None):
    """On JAX, turn on the persistent XLA compilation cache for this process and yield the
    environment variables that turn it on in subprocesses ({} on other backends).

    Repeated compilations of the same training step (a run, its killed twin, its resumption)
    then cost seconds instead of a minute. `directory` defaults to
    `$KERAS_LINCAE_JAX_CACHE` or `<tmp>/keras_lincae_jax_cache`.
    """
    if keras.backend.backend() != "jax":
        yield {}
        return
    import jax

    directory = directory or os.environ.get("KERAS_LINCAE_JAX_CACHE") or os.path.join(
        tempfile.gettempdir(), "keras_lincae_jax_cache")
    os.makedirs(directory, exist_ok=True)
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {name: getattr(jax.config, name) for name in names}
    values = dict(zip(names, (directory, 0.0, 0)))
    for name, value in values.items():
        jax.config.update(name, value)
    _reset_cache()
    try:
        yield {name.upper(): str(value) for name, value in values.items()}
    finally:
        for name, value in old.items():
            jax.config.update(name, value)
        _reset_cache()


def _reset_cache():
    try:  # the cache is initialised once per process; re-read the settings
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except Exception:  # noqa: BLE001 - an optimisation only
        pass
