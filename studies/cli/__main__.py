"""`python -m studies.cli` is `decoder-nas`."""

import sys

from .main import main

sys.exit(main())
