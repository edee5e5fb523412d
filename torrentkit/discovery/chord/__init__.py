"""Chord DHT: the ring as a tracker (node.py: pure ring logic; driver.py: trio UDP)."""

from torrentkit.discovery.chord.driver import ChordDriver, ChordJoinError, open_chord_node
from torrentkit.discovery.chord.node import (
    AnnounceDone,
    ChordConfig,
    ChordNode,
    GetPeersDone,
    JoinDone,
    LeaveDone,
    LookupDone,
)
from torrentkit.discovery.chord.ring import NodeRef, key_position, sha1_node_id

__all__ = [
    "AnnounceDone",
    "ChordConfig",
    "ChordDriver",
    "ChordJoinError",
    "ChordNode",
    "GetPeersDone",
    "JoinDone",
    "LeaveDone",
    "LookupDone",
    "NodeRef",
    "key_position",
    "open_chord_node",
    "sha1_node_id",
]
