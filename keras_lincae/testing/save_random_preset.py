"""Save a `lin_cae_tiny` model with random non-trivial weights as a preset (tests, in subprocesses).

Usage: `python -m keras_lincae.testing.save_random_preset PATH [--seed N] [--overwrite]`;
the backend is `KERAS_BACKEND`'s.
"""

import argparse

from keras_lincae.testing.helpers import randomize_weights


def save_random_preset(path, seed=0, overwrite=False):
    """`randomize_weights(lin_cae_tiny, seed)` saved to `path`; returns the preset path."""
    from keras_lincae import LinCAE

    model = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=seed)
    return model.save_to_preset(path, overwrite=overwrite)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    save_random_preset(args.path, seed=args.seed, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
