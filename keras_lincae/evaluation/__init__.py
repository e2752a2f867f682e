"""Held-out evaluation: metrics, the runner that scores presets, reports.

Modules: ``metrics`` (audio metrics), ``linearity`` (an encoder/decoder pair's linearity),
``registry`` (metric columns), ``model_functions`` (a model as cached NumPy callables),
``runner`` (scoring clips), ``chunking`` (the recipes' ``--chunk-seconds``), ``report``
(results tables). The names below load on first use, so that a recipe can read them (e.g.
``METRIC_GROUPS`` for its help) before Keras is imported.
"""

import importlib

_PUBLIC = {
    "DEFAULT_GAINS": "keras_lincae.evaluation.linearity",
    "METRIC_GROUPS": "keras_lincae.evaluation.registry",
    "MetricSpec": "keras_lincae.evaluation.registry",
    "metric_specs": "keras_lincae.evaluation.registry",
    "resolve_metrics": "keras_lincae.evaluation.registry",
    "Clip": "keras_lincae.data.songs",
    "SongSkipped": "keras_lincae.data.songs",
    "find_songs": "keras_lincae.data.songs",
    "load_song_clip": "keras_lincae.data.songs",
    "ModelFunctions": "keras_lincae.evaluation.model_functions",
    "MIN_CLIP_SAMPLES": "keras_lincae.evaluation.runner",
    "ProgressBar": "keras_lincae.evaluation.runner",
    "clip_batches": "keras_lincae.data.songs",
    "evaluate_batch": "keras_lincae.evaluation.runner",
    "evaluate_model": "keras_lincae.evaluation.runner",
    "load_clips": "keras_lincae.evaluation.runner",
    "load_model": "keras_lincae.evaluation.runner",
    "model_display_name": "keras_lincae.evaluation.runner",
    "summarize": "keras_lincae.evaluation.runner",
    "training_summary": "keras_lincae.evaluation.runner",
    "MIN_SONGS_FOR_CI": "keras_lincae.evaluation.report",
    "describe_chunking": "keras_lincae.evaluation.report",
    "format_csv": "keras_lincae.evaluation.report",
    "format_markdown": "keras_lincae.evaluation.report",
    "load_results": "keras_lincae.evaluation.report",
    "make_results": "keras_lincae.evaluation.runner",
    "table_rows": "keras_lincae.evaluation.report",
    "verdict": "keras_lincae.evaluation.report",
    "write_results": "keras_lincae.evaluation.report",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'keras_lincae.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
