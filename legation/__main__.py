"""`python -m legation` is the `legation` command."""

import sys

from legation.cli import main

sys.exit(main())
