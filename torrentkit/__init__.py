"""torrentkit: a BitTorrent-compatible peer-to-peer client, tracker and P2P discovery lab."""

__version__ = "0.1.0"
