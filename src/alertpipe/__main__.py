"""``python -m alertpipe``."""

from __future__ import annotations

import sys

from alertpipe.cli.main import main

sys.exit(main())
