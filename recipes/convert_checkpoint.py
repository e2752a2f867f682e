"""Convert an official linear-cae release folder into a keras-lincae preset.

    python recipes/convert_checkpoint.py SRC_DIR PRESET_DIR [--scale-factor 33]

SRC_DIR holds `autoencoder_inference_model_last.pth` and the three `*_kwargs_last.yaml`
files, as in the official Hugging Face release. Needs torch (only for reading the file).
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src_dir")
    parser.add_argument("preset_dir")
    parser.add_argument("--scale-factor", type=float, default=None, help="default: from the release name")
    args = parser.parse_args(argv)
    from keras_lincae import convert_official_checkpoint

    try:
        model = convert_official_checkpoint(args.src_dir, args.preset_dir, scale_factor=args.scale_factor)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"convert_checkpoint: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.preset_dir} ({model.count_params():,} parameters, scale_factor {model.scale_factor})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
