"""What the tests of other implementations' peers share: one DHT of their peers and ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from libp2p.peer.id import ID

from parsec.net.external import ExternalPeers
from parsec.net.local import LocalFleets
from parsec.testbed.shard import PeerShard, ShardSpec


def b58(peer_id: bytes) -> str:
    return ID(peer_id).to_base58()


@contextlib.contextmanager
def network_with_py_peers(label: str, external: ExternalPeers, *, py_peers: int, protocol: str, seed: int,
                          fill_timeout: float | None = None) -> Iterator[dict]:
    """``external``'s peers and a shard of ``py_peers`` py peers, every table filled from
    the union, and a py host running our ``default`` strategy joined through a tenth of
    each. Yields ``label`` (the program), ``{label}_peers``, ``py_peers``, ``shard``,
    ``loop``, ``strategy`` and ``filled`` (the program's fill report); stops everything."""
    shard = PeerShard(ShardSpec(0, py_peers, protocol_id=protocol, seed=seed))
    fleets = None
    try:
        theirs = external.start()
        ours = shard.start()
        union = theirs + ours
        filled = external.fill(union) if fill_timeout is None else external.fill(union, timeout=fill_timeout)
        shard.fill(union)
        fleets = LocalFleets(["default"], protocol_id=protocol, rpc_timeout=5, name=f"test-{label}-peers")
        loop, strategy = fleets.loop, fleets["default"]
        assert loop.run(strategy.join, theirs[::10] + ours[::10]) > 20  # a tenth of each as bootstrap peers
        yield {label: external, f"{label}_peers": theirs, "py_peers": ours, "shard": shard, "loop": loop,
               "strategy": strategy, "filled": filled}
    finally:
        if fleets is not None:
            fleets.stop()
        shard.stop()
        external.stop()
