"""A libtorrent peer with local service discovery on, run by test_lsd_netns.py inside a
network namespace (``ip netns exec NS python this.py ...``), never on the machine's own
interfaces. DHT, UPnP, NAT-PMP, PEX and uTP are off; LSD is what the test is about.

Prints one line per fact, flushed: ``listening PORT``, ``lsd_peer HOST:PORT`` for
every peer its LSD reported (from libtorrent's ``lsd_peer`` alert), ``finished INFOHASH``
when a torrent is complete.
Runs until killed.
"""

from __future__ import annotations

import argparse
import re
import time

import libtorrent as lt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True, help="the namespace's own address (v4 or v6)")
    p.add_argument("--save", required=True)
    p.add_argument("--seed", action="append", default=[], help="a torrent to seed")
    p.add_argument("--leech", action="append", default=[], help="a torrent to download")
    args = p.parse_args()
    # An IPv6 address listens as [ADDR]:0; libtorrent then runs its IPv6 LSD on it (its
    # lsd.cpp: a socket on [::]:6771 joined on the address's scope id, hop limit 32).
    listen = f"[{args.listen}]:0" if ":" in args.listen else f"{args.listen}:0"
    ses = lt.session(
        {
            "listen_interfaces": listen,
            "outgoing_interfaces": args.listen,
            "enable_dht": False,
            "enable_lsd": True,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": lt.alert_category.peer | lt.alert_category.status,
        },
        0,
    )
    deadline = time.monotonic() + 10
    while not (ses.is_listening() and ses.listen_port() > 0):
        if time.monotonic() > deadline:
            raise SystemExit("libtorrent did not start listening")
        time.sleep(0.05)
    print(f"listening {ses.listen_port()}", flush=True)
    for path, seed in [(t, True) for t in args.seed] + [(t, False) for t in args.leech]:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(path)
        atp.save_path = args.save
        atp.flags = lt.torrent_flags.disable_dht | lt.torrent_flags.disable_pex
        if seed:
            atp.flags |= lt.torrent_flags.seed_mode
        ses.add_torrent(atp)
    while True:
        ses.wait_for_alert(500)
        for alert in ses.pop_alerts():
            # The bindings have no class for lsd_peer_alert: its message names the peer
            # ("... peer 10.0.0.1:6881: received peer from local service discovery").
            # (nor a handle: the test runs one torrent at a time).
            if alert.what() == "lsd_peer":
                found = re.search(r"peer (\S+): received peer from local", alert.message())
                print(f"lsd_peer {found.group(1) if found else alert.message()}", flush=True)
            elif isinstance(alert, lt.torrent_finished_alert):
                print(f"finished {alert.handle.info_hashes().v1}", flush=True)


if __name__ == "__main__":
    main()
