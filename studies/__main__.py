"""`python -m studies` is `decoder-nas`."""

import sys

from .cli import main

sys.exit(main())
