"""The one exception of bundle work; its message is the one line the CLI prints."""


class BundleError(Exception):
    """A bundle or key cannot be made, read or trusted; the message says why."""
