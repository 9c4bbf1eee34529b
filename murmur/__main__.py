"""``python -m murmur``: the same as the ``murmur`` command."""

import sys

from murmur._cli.main import main

sys.exit(main())
