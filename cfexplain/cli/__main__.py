"""``python -m cfexplain.cli``."""

import sys

from . import main

sys.exit(main())
