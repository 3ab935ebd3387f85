"""``python -m torchbuf``."""

import sys

from torchbuf.cli import main

sys.exit(main())
