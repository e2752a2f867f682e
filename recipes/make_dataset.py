"""Build the offline music collection the small presets train and evaluate on.

    python recipes/make_dataset.py [--root DIR] [--partial]

Needs the Debian packages fluidsynth, fluid-soundfont-gm, drascula-music and
planetblupi-music-ogg (see keras_lincae/data/music_dataset.py); prints the train/test folders, and
progress lines on stderr. Errors are one line `make_dataset.py: error: ...` with exit status 2.
"""

import json
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "make_dataset.py"


def main(argv=None):
    from keras_lincae.data.music_dataset import default_music_dataset_dir, make_music_dataset

    parser = entry.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(default_music_dataset_dir()), help="output folder")
    parser.add_argument("--partial", action="store_true",
                        help="build whatever is available when fluidsynth or the game music is missing")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    entry.add_flags(parser, backend=False)
    args = parser.parse_args(argv)
    entry.prepare(PROG, debug=args.debug, needs_keras=False)
    entry.check_writable_folder(args.root, "--root")
    progress = None if args.quiet else lambda message: entry.note(PROG, message)
    print(json.dumps(make_music_dataset(args.root, require_all=not args.partial, progress=progress), indent=1))


if __name__ == "__main__":
    sys.exit(entry.run(main, PROG))
