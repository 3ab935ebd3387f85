"""``python -m torchbuf``."""

import sys

from torchbuf.app.cli import main

sys.exit(main())
