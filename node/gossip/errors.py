"""Errors raised by the gossip package.

    GossipError
    ├── GossipConfigError    a GossipConfig field is out of range
    └── GossipDecodeError    bytes from the wire are not a valid gossip message

The state machine itself raises nothing on hostile or stale input: a message it
cannot use is ignored, the way a lost packet would be.
"""

from __future__ import annotations


class GossipError(Exception):
    """Base of the gossip package's errors."""


class GossipConfigError(GossipError, ValueError):
    """A GossipConfig field is out of range; the message names the field."""


class GossipDecodeError(GossipError, ValueError):
    """Bytes received are not a gossip message this version can read."""
