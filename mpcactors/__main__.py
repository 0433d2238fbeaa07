"""`python -m mpcactors`: the command line."""

import sys

from mpcactors.cli import main

if __name__ == "__main__":  # worker processes (PSI) import this module as __mp_main__
    sys.exit(main())
