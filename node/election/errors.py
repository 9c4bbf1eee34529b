"""Errors raised by the election package.

    ElectionError
    ├── ElectionConfigError    an ElectionConfig field is out of range
    └── ElectionSetupError     an Election was built with an impossible voter set

The state machine itself raises nothing on stale or unexpected messages: a message
it cannot use is ignored, the way a lost packet would be.
"""

from __future__ import annotations


class ElectionError(Exception):
    """Base of the election package's errors."""


class ElectionConfigError(ElectionError, ValueError):
    """An ElectionConfig field is out of range; the message names the field."""


class ElectionSetupError(ElectionError, ValueError):
    """The voter set is empty or does not contain the node itself."""
