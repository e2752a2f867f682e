"""`python -m keras_lincae`: the `lincae` command line (see `keras_lincae.cli`)."""

import sys

from keras_lincae.cli import main

if __name__ == "__main__":
    sys.exit(main())
