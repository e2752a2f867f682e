#!/usr/bin/env bash
# Run the test suite once per Keras backend; fails if any backend fails.
set -uo pipefail
status=0
for backend in jax tensorflow torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider "$@" || status=1
done
exit $status
