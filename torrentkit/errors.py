"""The project's error types.

Two kinds, as in h11: ``LocalProtocolError`` means our own code misused an API;
``RemoteProtocolError`` means bytes from outside (a peer, a tracker, a file someone gave us)
broke the rules. Parsing anything from outside raises only the second kind (or a subclass),
so a driver can catch it, drop that source and carry on.
"""

from __future__ import annotations


class TorrentkitError(Exception):
    """Base of every error torrentkit raises on purpose."""


class LocalProtocolError(TorrentkitError):
    """Our code called an API the wrong way (a bug on this side)."""


class RemoteProtocolError(TorrentkitError):
    """Data from outside broke the protocol or a limit."""


class HandshakeRefused(RemoteProtocolError):
    """The peer closed (or reset) the connection before its handshake arrived: it refused
    ours (e.g. an encrypted one it cannot read, or a plaintext one when it requires
    encryption)."""


class BencodeError(RemoteProtocolError):
    """Bytes that are not strict, bounded bencode."""


class MetainfoError(RemoteProtocolError):
    """A .torrent file or magnet URI that is malformed or unsafe.

    ``field`` names the offending field (``info.piece length``, ``info.files[3].path``),
    and the message always starts with it, so one line tells the user what is wrong.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class UnsupportedError(MetainfoError):
    """Valid input that torrentkit does not handle yet (e.g. v2-only torrents)."""


class StorageError(TorrentkitError):
    """A problem with the files on disk (unsafe path, unwritable folder, disk full)."""
