"""``python -m harp_prune.cli ...`` is the ``harp`` command."""

import sys

from harp_prune.cli import main

sys.exit(main())
