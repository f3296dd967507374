"""``python -m tierenv.daemon`` (the ``tierenvd`` command): ``tierenv daemon`` without
loading the rest of the command line tool, for a quicker start on small hosts."""

import sys

from tierenv.daemon import main

sys.exit(main())
