"""Run a Python script as `__main__` with some top-level packages made unimportable.

Usage: `python -m keras_lincae.testing.run_blocked [--block PKG ...] SCRIPT [ARGS ...]`;
`import PKG` then raises ImportError in the script, as if PKG were not installed.
"""

import argparse
import runpy
import sys


def run_blocked(script, args, blocked):
    """Run `script` with `sys.argv = [script, *args]` and each name in `blocked` unimportable."""
    for name in blocked:
        sys.modules[name] = None  # `import name` now raises ImportError
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", action="append", default=[], metavar="PKG")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    run_blocked(args.script, args.args, args.block)


if __name__ == "__main__":
    main()
