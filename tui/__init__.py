"""`murmur top`: the Textual dashboard that attaches to any node and shows the lab live.

Data comes in through one `Connection` handed to `MurmurTop`; widgets never open
connections themselves, so tests drive the app against a real node or a fake.
"""

from murmur.tui.app import MurmurTop
from murmur.tui.connection import Connection

__all__ = ["Connection", "MurmurTop"]
