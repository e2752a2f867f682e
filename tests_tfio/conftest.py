"""Setup of the tensorflow-io suite (`tox -e tfio`): TensorFlow backend, quiet C++ logs."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
