"""A server's bootstrap list: multiaddr strings to the wire peers its strategy dials.

Production networks name their bootstrap peers by DNS (amino's
``/dnsaddr/bootstrap.libp2p.io/p2p/…``); those are resolved to the ``/ip4|ip6/…/tcp/…``
addresses our TCP transport dials. Bad or unresolvable entries are logged and skipped, so
the others still bootstrap.
"""

from __future__ import annotations

import logging

import multiaddr
from libp2p.peer.id import ID

from parsec.net.wire import WirePeer

log = logging.getLogger("parsec.server")

DNS_PROTOCOLS = ("dns", "dns4", "dns6", "dnsaddr")


def parse_bootstrap(addrs: list[str]) -> list[WirePeer]:
    """``/ip4/…/tcp/…/p2p/<id>`` strings as wire peers; bad entries are reported, skipped."""
    peers = []
    for text in addrs:
        try:
            addr = multiaddr.Multiaddr(text)
            peer_id = ID.from_base58(addr.get_peer_id())
            transport = addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer_id.to_base58()}"))
            peers.append(WirePeer.of(peer_id, [transport]))
        except Exception as error:
            log.warning("skipping bootstrap address %r: %s", text, error)
    return peers


async def resolve_dns_addrs(addrs: list[str], resolve=None) -> list[str]:
    """Bootstrap addresses with DNS names (amino's ``/dnsaddr/bootstrap.libp2p.io/p2p/…``)
    resolved to the ``/ip4|ip6/…/tcp/…/p2p/…`` addresses our TCP transport dials.

    ``resolve`` maps one multiaddr to its resolutions (default: py-multiaddr's DNS
    resolver). Addresses without a DNS part pass unchanged; a name that does not resolve
    is logged and dropped, so the others still bootstrap.
    """
    if resolve is None:
        async def resolve(addr):
            return await addr.resolve()

    out: list[str] = []
    for text in addrs:
        try:
            addr = multiaddr.Multiaddr(text)
            if not any(proto.name in DNS_PROTOCOLS for proto in addr.protocols()):
                out.append(text)
                continue
            peer = addr.get_peer_id()
            for resolved in await resolve(addr):
                names = [proto.name for proto in resolved.protocols()]
                if names[:2] not in (["ip4", "tcp"], ["ip6", "tcp"]) or set(names) - {"ip4", "ip6", "tcp", "p2p"}:
                    continue  # quic, websockets, …: not our transport
                if resolved.get_peer_id() is None and peer:
                    resolved = resolved.encapsulate(multiaddr.Multiaddr(f"/p2p/{peer}"))
                if peer is None or resolved.get_peer_id() == peer:
                    out.append(str(resolved))
        except Exception as error:
            log.warning("cannot resolve bootstrap address %r: %s", text, error)
    return list(dict.fromkeys(out))
