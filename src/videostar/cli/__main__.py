"""``python -m videostar.cli``: what launchers run on every rank."""

import sys

from videostar.cli import main

sys.exit(main())
