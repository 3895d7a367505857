"""`python -m albert ...` is the same as the `albert` command."""

import sys

from albert.cli import main

sys.exit(main())
