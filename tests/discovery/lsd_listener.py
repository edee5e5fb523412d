"""A bare LSD listener for test_lsd_netns.py, run inside a network namespace: joins the v4
or v6 group on port 6771 and prints every datagram as one JSON line (source address, the
TTL or hop limit it arrived with, bytes as latin-1), flushed, until killed.

Over a veth pair with no router between, the received TTL / hop limit is the one the sender
set (IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS), so the tests read the sender's socket option
here."""

from __future__ import annotations

import json
import socket
import struct
import sys

# Linux values; Python's socket module has IP_TTL but not IP_RECVTTL.
IP_RECVTTL = 12


def main() -> None:
    family = sys.argv[1]
    if family == "v6":
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        group = socket.inet_pton(socket.AF_INET6, "ff15::efc0:988f")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, struct.pack("16sI", group, 0))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.bind(("::", 6771))
        hops_cmsg = (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mreq = struct.pack("4s4s", socket.inet_aton("239.192.152.143"), bytes(4))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.bind(("239.192.152.143", 6771))
        hops_cmsg = (socket.IPPROTO_IP, socket.IP_TTL)
    print("ready", flush=True)
    while True:
        data, ancillary, _, source = sock.recvmsg(2048, socket.CMSG_SPACE(4))
        hops = [
            struct.unpack("i", cdata[:4])[0]
            for level, kind, cdata in ancillary
            if (level, kind) == hops_cmsg
        ]
        print(
            json.dumps(
                {
                    "from": source[0],
                    "hops": hops[0] if hops else None,
                    "data": data.decode("latin-1"),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
