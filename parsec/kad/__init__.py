"""Sans-IO Kademlia: XOR keyspace, k-buckets and the iterative lookup state machine.

Pure logic with no sockets, clocks or event loops, so ``parsec.net`` can drive it over real
libp2p streams and ``parsec.sim`` over a virtual clock with exactly the same semantics.
Imports nothing of parsec outside this package.
"""

from .crawl import (
    CRAWL_MAX_CPL,
    CrawlResult,
    Crawler,
    KeyPreimages,
    random_key_bytes_with_cpl,
)
from .estimator import (
    OPTPROV_INDIVIDUAL_COEFFICIENT,
    OPTPROV_SET_COEFFICIENT,
    NetworkSizeEstimator,
    bucket_fill_for,
    threshold_coefficients,
)
from .fullrt import DirectProvide, FullRoutingTable, NotReady, closest_in_sorted
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
from .constants import ALPHA, BETA, K, NOT_FOUND, NOT_READY, RPC_TIMEOUT, deadline_exceeded
from .lookup import Lookup
from .lookup_types import UNREACHABLE, Followup, Goal, LookupResult, PeerState, Phase, Reason
from .optimistic import OPTPROV_RETURN_AFTER, OPTPROV_STALL_TIMEOUT, OptimisticProvide
from .machine import DELIVERED, Failure, Machine, Outcome, Reply, Request, RequestKind
from .provide import ClassicProvide, ProvideOperation, ProvideResult
from .stores import OPTPROV_POOL_SIZE, BackgroundPool, StoreState
from .routing import RoutingTable
from .sweep import RegionProvide, RegionReport, RegionResult
from .sweep_regions import KeyStore, Region
from .sweep_schedule import CycleResult, Job, SweepCycle, SweepSchedule, WorkerPool

__all__ = [
    "ALPHA",
    "BETA",
    "DELIVERED",
    "K",
    "NOT_FOUND",
    "NOT_READY",
    "RPC_TIMEOUT",
    "Failure",
    "Machine",
    "Outcome",
    "Reply",
    "deadline_exceeded",
    "CRAWL_MAX_CPL",
    "KEY_BITS",
    "KEYSPACE_SIZE",
    "OPTPROV_INDIVIDUAL_COEFFICIENT",
    "OPTPROV_POOL_SIZE",
    "OPTPROV_RETURN_AFTER",
    "OPTPROV_STALL_TIMEOUT",
    "OPTPROV_SET_COEFFICIENT",
    "UNREACHABLE",
    "BackgroundPool",
    "ClassicProvide",
    "CycleResult",
    "Job",
    "KeyStore",
    "Region",
    "RegionProvide",
    "RegionReport",
    "RegionResult",
    "SweepCycle",
    "SweepSchedule",
    "WorkerPool",
    "CrawlResult",
    "Crawler",
    "DirectProvide",
    "Followup",
    "FullRoutingTable",
    "Goal",
    "Key",
    "KeyPreimages",
    "Lookup",
    "LookupResult",
    "NetworkSizeEstimator",
    "NotReady",
    "OptimisticProvide",
    "PeerRef",
    "PeerState",
    "Phase",
    "ProvideOperation",
    "ProvideResult",
    "Reason",
    "Request",
    "RequestKind",
    "RoutingTable",
    "StoreState",
    "bucket_fill_for",
    "closest_in_sorted",
    "closest_peers",
    "common_prefix_len",
    "distance",
    "key_of",
    "normalized_distance",
    "random_key_bytes_with_cpl",
    "sort_by_distance",
    "threshold_coefficients",
]
