"""Write tokens (BEP 5): ``announce_peer`` (and BEP 44 ``put``) must carry a token that our
``get_peers`` (``get``) reply gave the same IP for the same target.

A token is 8 bytes of SHA-1 over a secret, the asker's IP and the target (info-hash or item
key). The secret rotates every ``rotate_every`` (5 minutes, driven by the node's timer) and
the previous one is still accepted, so a token lives 5 to 10 minutes. A token is useless for
another IP or another target (docs/limits.md item 14). The port is not bound: a NAT may move
it between the two queries (BEP 5 binds the IP only).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Final

ROTATE_EVERY: Final = 300.0


class TokenIssuer:
    def __init__(self, secret: bytes) -> None:
        self._current = secret
        self._previous = secret

    def rotate(self, secret: bytes) -> None:
        self._previous, self._current = self._current, secret

    @staticmethod
    def _make(secret: bytes, host: str, target: bytes) -> bytes:
        try:
            ip = ipaddress.ip_address(host).packed
        except ValueError:
            ip = host.encode()
        return hashlib.sha1(secret + ip + target).digest()[:8]

    def issue(self, host: str, target: bytes) -> bytes:
        return self._make(self._current, host, target)

    def check(self, token: bytes, host: str, target: bytes) -> bool:
        return token in (
            self._make(self._current, host, target),
            self._make(self._previous, host, target),
        )
