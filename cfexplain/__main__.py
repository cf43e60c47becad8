"""``python -m cfexplain``: the command line (as the ``cfexplain`` command; ``torchrun -m cfexplain``)."""

import sys

from .cli import main

sys.exit(main())
