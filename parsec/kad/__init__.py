"""Sans-IO Kademlia: XOR keyspace, k-buckets and the iterative lookup state machine.

Pure logic with no sockets, clocks or event loops, so ``parsec.net`` can drive it over real
libp2p streams and ``parsec.sim`` over a virtual clock with exactly the same semantics.
Imports nothing of parsec outside this package.
"""

from .keyspace import (
    KEY_BITS,
    KEYSPACE_SIZE,
    Key,
    PeerRef,
    closest_peers,
    common_prefix_len,
    distance,
    key_of,
    normalized_distance,
    sort_by_distance,
)
from .lookup import UNREACHABLE, Followup, Goal, Lookup, LookupResult, PeerState, Phase, Reason
from .routing import RoutingTable

__all__ = [
    "KEY_BITS",
    "KEYSPACE_SIZE",
    "UNREACHABLE",
    "Followup",
    "Goal",
    "Key",
    "Lookup",
    "LookupResult",
    "PeerRef",
    "PeerState",
    "Phase",
    "Reason",
    "RoutingTable",
    "closest_peers",
    "common_prefix_len",
    "distance",
    "key_of",
    "normalized_distance",
    "sort_by_distance",
]
