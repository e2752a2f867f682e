"""Build the offline music collection the small presets train and evaluate on.

    python recipes/make_dataset.py [--root DIR] [--partial]

Needs the Debian packages fluidsynth, fluid-soundfont-gm, drascula-music and
planetblupi-music-ogg (see keras_lincae/music_dataset.py); prints the train/test folders.
"""

import argparse
import json

from keras_lincae.music_dataset import default_music_dataset_dir, make_music_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(default_music_dataset_dir()), help="output folder")
    parser.add_argument("--partial", action="store_true",
                        help="build whatever is available when fluidsynth or the game music is missing")
    args = parser.parse_args(argv)
    print(json.dumps(make_music_dataset(args.root, require_all=not args.partial), indent=1))


if __name__ == "__main__":
    main()
