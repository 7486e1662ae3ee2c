"""``python -m harp_prune ...`` (and ``torchrun -m harp_prune ...``) is the ``harp`` command."""

import sys

from harp_prune.cli import main

sys.exit(main())
