"""``python -m wasmhost``."""

import sys

from .cli import main

sys.exit(main())
