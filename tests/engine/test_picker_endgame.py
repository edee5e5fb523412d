"""Endgame duplicates: :meth:`Picker._take_endgame` against the one-pass-per-count original.

The picker's endgame pick was rewritten to scan the pieces once (and skip those where the
peer already holds every missing block); ``take_endgame_reference`` is the implementation it
replaced, kept here verbatim so that the property below can hold the two equal: same blocks
in the same order, same picker state, same draws from the rng.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.engine.test_picker import BS, _picker_state, bits
from torrentkit.engine.picker import Picker


def take_endgame_reference(
    picker: Picker[Any], peer: Any, ps: Any, n: int, picked: list[tuple[int, int]]
) -> None:
    """The original ``Picker._take_endgame``: one pass over the pieces per requester count."""
    have, prio = ps.have, picker._prio
    pieces = [(p, part) for p, part in picker._partials.items() if have[p] and prio[p]]
    if not pieces:
        return
    r = picker._rng.randrange(len(pieces))
    pieces = pieces[r:] + pieces[:r]
    need = n - len(picked)
    requests = ps.requests
    for count in range(1, picker.endgame_requesters):
        for piece, part in pieces:
            taken = 0
            for blk, reqs in enumerate(part.requesters):
                if len(reqs) == count and peer not in reqs:
                    reqs.append(peer)
                    requests.add((piece, blk))
                    picked.append((piece, blk))
                    taken += 1
                    if taken == need:
                        break
            if taken:
                part.by_peer[peer] = part.by_peer.get(peer, 0) + taken
                need -= taken
                if not need:
                    return
    if requests or picker.endgame_requesters < 2:  # busy, or no duplicates at all
        return
    best: tuple[int, int, Any, int] | None = None
    for piece, part in pieces:
        for blk, reqs in enumerate(part.requesters):
            if reqs and peer not in reqs and (best is None or len(reqs) < best[0]):
                best = (len(reqs), piece, part, blk)
    if best is not None:
        _, piece, part, blk = best
        part.requesters[blk].append(peer)
        part.by_peer[peer] = part.by_peer.get(peer, 0) + 1
        requests.add((piece, blk))
        picked.append((piece, blk))


PEERS = ("a", "b", "c", "d", "e", "f")
N_PIECES = 8

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["pick", "pick", "pick", "deliver", "release", "pass", "prio"]),
        st.sampled_from(PEERS),
        st.integers(0, 255),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(
    cap=st.integers(1, 5),
    blocks=st.integers(1, 6),
    haves=st.lists(st.integers(0, 2**N_PIECES - 1), min_size=len(PEERS), max_size=len(PEERS)),
    seeds=st.sets(st.sampled_from(PEERS), max_size=2),
    ops=_OPS,
    seed=st.integers(0, 2**16),
    peer=st.sampled_from(PEERS),
    n=st.integers(1, 40),
    already=st.integers(0, 3),
    sweep=st.booleans(),
    idle=st.booleans(),
)
def test_take_endgame_equals_the_one_pass_per_count_original(
    cap: int,
    blocks: int,
    haves: list[int],
    seeds: set[str],
    ops: list[tuple[str, str, int]],
    seed: int,
    peer: str,
    n: int,
    already: int,
    sweep: bool,
    idle: bool,
) -> None:
    """On a random picker driven through the public API (peers with random pieces, picks,
    blocks received from the asked peer or another, released requests, pieces passed,
    priorities; often every peer asking for all it can, which is endgame, and the chosen
    peer's requests released while the others fill up), one endgame pick for a peer -- with
    or without blocks already in ``picked`` -- gives the same blocks in the same order, the
    same picker and the same rng state as the original."""
    picker: Picker[str] = Picker(
        piece_length=blocks * BS,
        total_length=N_PIECES * blocks * BS - (BS // 2 if seed & 1 else 0),
        rng=random.Random(seed),
        endgame_requesters=cap,
    )
    for name, mask in zip(PEERS, haves, strict=True):
        if name in seeds:
            picker.peer_have_all(name)
        else:
            picker.peer_bitfield(
                name, bits("".join("*" if mask >> i & 1 else " " for i in range(N_PIECES)))
            )
    for op, who, x in ops:
        if op == "pick":
            picker.pick(who, x % 12 + 1)
        elif op in ("deliver", "release"):
            held = picker.requests_of(who)
            if held:
                req = held[x % len(held)]
                if op == "release":
                    picker.request_released(who, req.piece, req.begin)
                else:
                    sender = who if x & 1 else PEERS[x % len(PEERS)]
                    res = picker.block_received(sender, req.piece, req.begin, req.length)
                    if res.piece_complete and x & 2:
                        picker.piece_passed(req.piece)
        elif op == "pass":
            piece = x % N_PIECES
            if piece in picker.in_progress():
                picker.piece_passed(piece)
        elif x % 5 == 0:  # "prio", now and then
            picker.set_priority(x % N_PIECES, x % 3)
        if sweep and x % 7 == 0:  # every peer asks for all it can: endgame, duplicates
            for name in PEERS:
                picker.pick(name, N_PIECES * blocks)
    if idle:  # the peer holds nothing (it may go one past the cap), the others all they can
        picker.peer_choked(peer)
        for name in PEERS:
            if name != peer:
                picker.pick(name, N_PIECES * blocks)
    picker.check_consistency()
    if picker.in_endgame:
        event("endgame")

    ps = picker._peers[peer]
    # ``picked`` may already hold blocks of this pick (pick_blocks passes its list on)
    before = min(already, n - 1)
    picked = [(N_PIECES + k, 0) for k in range(before)]
    ref = copy.deepcopy(picker)
    ref_picked = list(picked)
    take_endgame_reference(ref, peer, ref._peers[peer], n, ref_picked)
    picker._take_endgame(peer, ps, n, picked)

    assert picked == ref_picked
    assert _picker_state(picker) == _picker_state(ref)
    for piece, part in picker._partials.items():  # key order, which == does not see
        assert list(part.by_peer) == list(ref._partials[piece].by_peer)
    picker.check_consistency()
    if len(picked) > before:
        event("took some")
    if len(picked) == n:
        event("took all it asked for")
    if any(len(picker.requesters(p, b * BS)) > cap for p, b in picked[before:]):
        event("idle peer past the cap")
