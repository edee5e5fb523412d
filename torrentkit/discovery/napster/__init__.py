"""Napster mode: a central index (join, publish, search, leave) over HTTP/JSON.

:mod:`.index` is the pure core, :mod:`.protocol` the API and its JSON mapping (documented
there), :mod:`.server` the aiohttp service (``torrentkit napster-index``), :mod:`.client` the
httpx client and the publisher that keeps a peer's files listed.
"""
