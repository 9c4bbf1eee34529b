"""The frozen build's entry point: the ``murmur`` command, and (``murmur __run-helper
MODULE``) the daemon's helpers (murmur/_frozen.py). PyInstaller starts here.

A helper is dispatched before the CLI is imported: the fork server is the image of
every run's supervisor, so it loads only what a supervisor needs."""

import sys

if sys.argv[1:2] == ["__run-helper"]:
    from murmur._frozen import run_helper

    sys.exit(run_helper(sys.argv[2:]))

from murmur._cli.main import main

sys.exit(main())
