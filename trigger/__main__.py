"""`python -m trigger` is the `trigger` command."""

import sys

from trigger.cli import main

sys.exit(main())
