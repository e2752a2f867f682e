"""Audio input: reading files, training pipelines, songs and stems, generated datasets."""

from keras_lincae.data.pipelines import *  # noqa: F401,F403  (split by concern in the redesign)
