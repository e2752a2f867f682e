#!/usr/bin/env bash
# Run the test suite once per Keras backend; fails if any backend fails.
# A pytest process killed by a signal (a crash inside native code: SIGSEGV, SIGABRT) is run once
# more, saying so; failing tests are never rerun.
set -uo pipefail
status=0
for backend in jax tensorflow torch; do
    for attempt in 1 2; do
        echo "=== KERAS_BACKEND=$backend$([[ $attempt == 2 ]] && echo " (rerun after a crash)")"
        KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider "$@"
        rc=$?
        if (( rc > 128 && attempt == 1 )); then
            echo "=== pytest was killed by signal $((rc - 128)) on $backend (a native crash, not a test failure); once more"
            continue
        fi
        break
    done
    (( rc == 0 )) || status=1
done
exit $status
