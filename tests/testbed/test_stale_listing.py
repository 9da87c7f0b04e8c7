"""Every implementation's testbed tables list unreachable ids the way ``parsec.model.stale`` draws:
the same pairs in py, Go and js, so one testbed has one stale-entry model.

5 peers and 12 ghost ids: 16 entries fit every table, so a table's size is exactly 4 plus the
ghosts ``parsec.model.stale.lists`` gives its owner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from parsec.model.stale import lists
from parsec.net.external import ExternalPeers, go_available, go_command, js_command
from parsec.testbed.ghosts import ghosts
from parsec.testbed.shard import PeerShard, ShardSpec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LISTING = 0.5
HOLE = "/ip4/127.0.0.1/tcp/9"  # never dialled: a fill only writes tables


def expected_sizes(live, dead) -> list[int]:
    return [len(live) - 1 + sum(lists(me.peer_id, ghost.peer_id, LISTING) for ghost in dead) for me in live]


def test_py_tables_list_the_drawn_ghosts():
    shard = PeerShard(ShardSpec(0, 5, seed=7))
    try:
        live = shard.start()
        dead = ghosts(12, HOLE, seed=7)
        shard.fill(live + dead, len(dead), LISTING)
        for node, me in zip(shard.nodes, live):
            listed = {ref.peer_id for ref in node.routing.peers()} & {ghost.peer_id for ghost in dead}
            assert listed == {ghost.peer_id for ghost in dead if lists(me.peer_id, ghost.peer_id, LISTING)}
        sizes = expected_sizes(live, dead)
        assert 0 < sum(sizes) - 4 * len(live) < 12 * len(live)  # some listed, not all
    finally:
        shard.stop()


@pytest.mark.parametrize("implementation", ["go", "js"])
def test_external_tables_list_the_same_draws(implementation):
    if implementation == "go":
        if not go_available():
            pytest.skip("the Go toolchain is not installed")
        subprocess.run(["bash", str(ROOT / "scripts" / "build-go.sh")], check=True, timeout=1200)
        command = go_command()
    else:
        if shutil.which("node") is None:
            pytest.skip("node (Node.js >= 20) is not installed")
        subprocess.run(["bash", str(ROOT / "scripts" / "build-js.sh")], check=True, timeout=600)
        command = js_command()
    program = ExternalPeers(command, peers=5, protocol_prefix="/parsec-stale-test", seed=31,
                            name=f"{implementation}-stale")
    try:
        live = program.start()
        dead = ghosts(12, HOLE, seed=31)
        sizes = expected_sizes(live, dead)
        filled = program.fill(live + dead, len(dead), LISTING)
        assert (filled["min_rt"], filled["max_rt"]) == (min(sizes), max(sizes))
        assert filled["mean_rt"] == pytest.approx(sum(sizes) / len(sizes))
        everything = program.fill(live + dead, len(dead), 1.0)
        assert everything["mean_rt"] == pytest.approx(len(live) - 1 + len(dead))
    finally:
        program.stop()
