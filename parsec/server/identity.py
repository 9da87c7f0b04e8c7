"""Which libp2p identity a server takes, and which region it reports.

Under WAN emulation a peer's region follows from its id (``parsec.model.latency``), so
the server draws identities until one lands in its configured region; a region the model
does not place peers in gives way to the identity's own region.
"""

from __future__ import annotations

from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from parsec.config import ServerSettings
from parsec.model.latency import LatencyModel
from parsec.net import pylibp2p
from parsec.server import nodeinfo


def server_identity(settings: ServerSettings, ray_node: nodeinfo.RayNode | None,
                    latency: LatencyModel | None) -> tuple[KeyPair, str]:
    """(key pair, region): the configured region (else the Ray node's), and an identity in
    it when ``latency`` places peers there."""
    wanted = settings.region or nodeinfo.region(ray_node)
    if latency is None:
        return pylibp2p.keypair(), wanted
    if wanted in latency.regions and latency.weights[latency.index(wanted)] > 0:
        return pylibp2p.keypair_in(wanted, latency), wanted
    key = pylibp2p.keypair()
    return key, latency.region_of(ID.from_pubkey(key.public_key).to_bytes())
