"""Convert an official linear-cae release folder into a keras-lincae preset.

    python recipes/convert_checkpoint.py SRC_DIR PRESET_DIR [--scale-factor 33]

SRC_DIR holds `autoencoder_inference_model_last.pth` and the three `*_kwargs_last.yaml`
files, as in the official Hugging Face release. Needs torch (only for reading the file).
Errors are one line `convert_checkpoint.py: error: ...` with exit status 2.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "convert_checkpoint.py"


def main(argv=None):
    """Run the recipe; returns the exit status (2 for a missing or invalid release)."""
    parser = entry.ArgumentParser(prog=PROG, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src_dir")
    parser.add_argument("preset_dir")
    parser.add_argument("--scale-factor", type=float, default=None, help="default: from the release name")
    entry.add_flags(parser)
    args = parser.parse_args(argv)
    return entry.run(lambda: _convert(args), PROG)


def _convert(args):
    entry.prepare(PROG, args.backend, args.debug)
    entry.check_writable_folder(args.preset_dir, "PRESET_DIR")
    from keras_lincae import convert_official_checkpoint

    model = convert_official_checkpoint(args.src_dir, args.preset_dir, scale_factor=args.scale_factor)
    print(f"wrote {args.preset_dir} ({model.count_params():,} parameters, scale_factor {model.scale_factor})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
