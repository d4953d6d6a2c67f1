"""``python -m vdm3d ...``: the same command line as the ``vdm3d`` script, for environments where the
script is not on PATH."""

import sys

from vdm3d.cli.main import main

sys.exit(main())
