"""`python -m morl.cli ...` runs the `morl` command."""

import sys

from morl.cli import main

sys.exit(main())
