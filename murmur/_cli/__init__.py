"""The ``murmur`` command line. Private: the entry point is ``murmur._cli.main:main``."""
