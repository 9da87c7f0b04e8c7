"""The engine fleets' policy (shared by the libp2p driver and the simulator) and the trace."""

import pytest

from parsec.kad import ClassicProvide, DirectProvide, NotReady, OptimisticProvide, PeerRef, RoutingTable
from parsec.kad.crawl import CrawlResult
from parsec.kad.fleets import ENGINE_STRATEGIES, FleetOptions, engine_fleet, refresh_keys
from parsec.kad.keyspace import common_prefix_len, key_of
from parsec.kad.trace import Trace, provide_error

ME = PeerRef(b"me", 1 << 255)
PEERS = [PeerRef(b"p%d" % i, (i * 7919) << 230) for i in range(1, 60)]


def table() -> RoutingTable:
    routing = RoutingTable(ME)
    for peer in PEERS:
        routing.add(peer)
    return routing


def test_each_fleet_builds_its_own_provide_machine_from_the_routing_table() -> None:
    default, optprov = engine_fleet("default", table()), engine_fleet("optprov", table())
    assert type(default.provide_operation(5, 0.0)) is ClassicProvide
    fresh = optprov.provide_operation(5, 0.0)
    assert type(fresh) is OptimisticProvide and fresh.fell_back  # no estimate yet: classic rules
    assert default.seeds(5) == default.routing.closest(5, 20)
    assert default.describe("/ipfs/kad/1.0.0") == {
        "strategy": "default", "provide": "classic", "dht": "parsec-kad", "alpha": 10, "beta": 3, "k": 20,
        "protocol": "/ipfs/kad/1.0.0"}
    assert default.estimator is None and optprov.provide_extra(0.0) == {"network_size_estimate": None}
    with pytest.raises(ValueError, match="unknown engine fleet"):
        engine_fleet("pylibp2p", table())
    assert set(ENGINE_STRATEGIES) == {"default", "optprov", "fullrt"}


def test_fullrt_is_not_ready_before_a_crawl_then_stores_directly() -> None:
    fullrt = engine_fleet("fullrt", table(), FleetOptions(crawl_interval=60))
    assert not fullrt.ready(joined=True) and fullrt.routing_table_size() == len(fullrt.routing) == 20
    with pytest.raises(NotReady):
        fullrt.provide_operation(5, 0.0)
    fullrt.finish_crawl(CrawlResult(PEERS, [], [], len(PEERS), 0, 0, 0, 0, 0, 0.0, 1.0))
    assert fullrt.ready(joined=True) and fullrt.routing_table_size() == len(PEERS)
    op = fullrt.provide_operation(5, 0.0)
    assert type(op) is DirectProvide
    assert fullrt.seeds(5) == fullrt.table.closest(5, 20)
    assert fullrt.describe("/x")["crawl_interval_s"] == 60


def test_refresh_keys_are_one_per_bucket_and_the_same_every_time() -> None:
    keys = refresh_keys(ME.key)
    assert [common_prefix_len(ME.key, key_of(k)) for k in keys] == list(range(12))
    assert refresh_keys(ME.key) == keys


def test_a_provide_trace_and_its_error_text() -> None:
    op = ClassicProvide(5, PEERS[:3], now=0.0)
    for request in op.poll(0.0):
        op.on_failure(request.peer, 1.0, "dial timeout")
    op.poll(1.0)
    result = op.result
    trace = Trace("provide")
    trace.rpcs["FIND_NODE"] += 3
    trace.absorb_provide(result)
    detail = trace.as_dict()
    assert detail["rpc_total"] == 3 and detail["failures"] == 3 and detail["strategy"] == "classic"
    assert provide_error(result) == "no ADD_PROVIDER succeeded (classic provide, walk end exhausted)"


def test_every_list_of_strategies_is_the_registry() -> None:
    """Names are written once (``STRATEGIES``); the settings, the simulator and the CLI's
    help derive theirs, so a new entry reaches them all."""
    from parsec.config import CLIENT_MODE_STRATEGIES, FLEETS, ServerSettings
    from parsec.kad.fleets import STRATEGIES
    from parsec.sim.settings import SIM_FLEETS

    assert FLEETS == tuple(STRATEGIES)
    assert SIM_FLEETS == CLIENT_MODE_STRATEGIES == ENGINE_STRATEGIES
    assert ENGINE_STRATEGIES == tuple(name for name, spec in STRATEGIES.items() if spec.policy is not None)
    assert all(STRATEGIES[name].policy.name == name for name in ENGINE_STRATEGIES)  # type: ignore[union-attr]
    help_text = ServerSettings.model_fields["strategy"].description or ""
    assert all(name in help_text for name in STRATEGIES)


def test_each_engine_strategy_declares_its_upkeep() -> None:
    """The join's upkeep and the maintenance schedule come from the policy: refresh now and
    every 10 minutes (``default``, ``optprov``), or a crawl at join and whenever one is due
    (``fullrt``)."""
    default = engine_fleet("default", table())
    schedule = default.maintenance()
    assert default.join_upkeep is None
    assert [next(schedule), schedule.send(0.0), schedule.send(5.0)] == ["refresh", 600.0, "refresh"]
    fullrt = engine_fleet("fullrt", table(), FleetOptions(crawl_interval=120))
    schedule = fullrt.maintenance()
    assert fullrt.join_upkeep == "crawl"
    assert next(schedule) == 2.0  # checks 60 times per interval, at least 1 s apart
    assert schedule.send(2.0) == "crawl"  # no crawl ever started: due
    fullrt.start_crawl(3.0)  # under way: not due again until it finished and 120 s passed
    assert schedule.send(3.0) == 2.0 and schedule.send(5.0) == 2.0
    with pytest.raises(ValueError, match="does not crawl"):
        default.start_crawl(0.0)
