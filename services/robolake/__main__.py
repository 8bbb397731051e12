"""``python -m robolake`` is the ``robolake`` command."""

import sys

from robolake.cli import main

sys.exit(main())
