"""Bootstrap address resolution for production networks (amino's /dnsaddr peers).

The resolver is injected: this machine must not query DNS for the public bootstrap
names, and what is tested is which resolutions are kept (TCP, the right peer id)."""

import multiaddr
import trio

from parsec.config import AMINO_BOOTSTRAP
from parsec.server.bootstrap import parse_bootstrap, resolve_dns_addrs

PEER = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"
OTHER = "QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa"


async def _fake_dns(addr):
    if "bootstrap.libp2p.io" not in str(addr):
        raise OSError("NXDOMAIN")
    return [multiaddr.Multiaddr(text) for text in (
        f"/ip4/127.0.0.9/tcp/4001/p2p/{PEER}",            # kept
        f"/ip4/127.0.0.9/udp/4001/quic-v1/p2p/{PEER}",     # not our transport
        f"/ip4/127.0.0.9/tcp/443/wss/p2p/{PEER}",          # not our transport
        "/ip6/::1/tcp/4001",                               # kept, peer id added
        f"/ip4/127.0.0.8/tcp/4001/p2p/{OTHER}",            # another peer's record
    )]


def test_dnsaddr_resolves_to_tcp_addresses_of_the_named_peer():
    addrs = [AMINO_BOOTSTRAP[0], "/dnsaddr/unknown.example/p2p/" + PEER, f"/ip4/127.0.0.7/tcp/4001/p2p/{OTHER}"]
    resolved = trio.run(resolve_dns_addrs, addrs, _fake_dns)
    assert resolved == [f"/ip4/127.0.0.9/tcp/4001/p2p/{PEER}", f"/ip6/::1/tcp/4001/p2p/{PEER}",
                        f"/ip4/127.0.0.7/tcp/4001/p2p/{OTHER}"]
    assert len(parse_bootstrap(resolved)) == 3
