"""``python -m qnewton`` runs the command-line interface."""

import sys

from qnewton.cli import main

sys.exit(main())
