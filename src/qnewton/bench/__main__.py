"""``python -m qnewton.bench`` runs the benchmark suite."""

import sys

from qnewton.bench.cli import main

sys.exit(main())
