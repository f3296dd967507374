"""`python -m tierenv.cli` runs the command line."""

import sys

from tierenv.cli import main

sys.exit(main())
