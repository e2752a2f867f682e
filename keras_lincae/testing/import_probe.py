"""Import `keras_lincae` in a fresh interpreter and print, as JSON, what the import did.

Run by path (`python -P keras_lincae/testing/import_probe.py`), not with `-m`: `-m` would
import the package before the probe takes its snapshot. Prints `{"environ_changes":
{name: [before, after]}, "heavy_modules": [...], "presets": [...]}`.
"""

import json
import os
import sys

HEAVY = ("keras", "jax", "tensorflow", "torch")


def main():
    before = dict(os.environ)
    import keras_lincae

    after = dict(os.environ)
    changes = {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)}
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    presets = keras_lincae.list_presets() if "--list-presets" in sys.argv[1:] else []
    print(json.dumps(dict(environ_changes=changes, heavy_modules=heavy, presets=presets)))


if __name__ == "__main__":
    main()
