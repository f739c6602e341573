"""``python -m dynoscope``: the same as the ``dynoscope`` command."""

import sys

from dynoscope.cli import main

sys.exit(main())
