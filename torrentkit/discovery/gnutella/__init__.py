"""Gnutella flooding and KaZaA supernodes over peer wire links (issue 7, items 2 and 3).

- messages.py: the overlay info-hash, the ``tk_overlay`` extension and its messages
  (hello, ping, pong, query, hit, share): encode and parse, 4 kB at most.
- overlay.py: :class:`OverlayNode`, the sans-IO node (links, flooding with TTL and hops,
  duplicate suppression, reverse-path routing, supernode index, limits).
- driver.py: :class:`OverlayDriver`, the trio driver (listen, dial, one task per link, timers,
  ``search`` and ``publish``).
"""

from torrentkit.discovery.gnutella.driver import OverlayDriver, group_hits
from torrentkit.discovery.gnutella.messages import (
    EXTENSION_NAME,
    OVERLAY_CONSTANT,
    OVERLAY_INFO_HASH,
    FileEntry,
    Role,
)
from torrentkit.discovery.gnutella.overlay import Counters, Hit, OverlayConfig, OverlayNode

__all__ = [
    "EXTENSION_NAME",
    "OVERLAY_CONSTANT",
    "OVERLAY_INFO_HASH",
    "Counters",
    "FileEntry",
    "Hit",
    "OverlayConfig",
    "OverlayDriver",
    "OverlayNode",
    "Role",
    "group_hits",
]
