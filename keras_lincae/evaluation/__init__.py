"""Held-out evaluation: metrics, the runner that scores presets, reports."""

from keras_lincae.evaluation.runner import *  # noqa: F401,F403  (split by concern in the redesign)
