"""A bare LSD listener for test_lsd_netns.py, run inside a network namespace: joins the v4
or v6 group on port 6771 and prints every datagram as one JSON line (source address,
bytes as latin-1), flushed, until killed."""

from __future__ import annotations

import json
import socket
import struct
import sys


def main() -> None:
    family = sys.argv[1]
    if family == "v6":
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        group = socket.inet_pton(socket.AF_INET6, "ff15::efc0:988f")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, struct.pack("16sI", group, 0))
        sock.bind(("::", 6771))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mreq = struct.pack("4s4s", socket.inet_aton("239.192.152.143"), bytes(4))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.bind(("239.192.152.143", 6771))
    print("ready", flush=True)
    while True:
        data, source = sock.recvfrom(2048)
        print(json.dumps({"from": source[0], "data": data.decode("latin-1")}), flush=True)


if __name__ == "__main__":
    main()
