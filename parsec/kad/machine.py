"""The one interface every engine state machine implements, and the values it trades.

Every operation of the engine — a lookup (``Lookup``), a provide (``ClassicProvide``,
``OptimisticProvide``, ``DirectProvide``), a crawl (``Crawler``) — is a ``Machine``: it never
sends, sleeps or reads a clock. A driver (``parsec.net.driver`` over libp2p streams,
``parsec.sim.driver`` over the simulator's virtual clock, ``tests/kad/simnet`` in the tests)
is one loop over this interface plus one transport function that carries a ``Request`` and
brings back its ``Outcome``.

Driver loop::

    while not machine.done:
        for request in machine.poll(now()):       # Request(peer, kind, key)
            send it; its outcome arrives later
        if machine.returnable: answer the caller (the machine may go on in the background)
        wait for an outcome, or until machine.next_deadline()
        machine.on_outcome(request, Reply(closer, providers) or Failure(error), now())
    machine.result

Rules shared by every machine:

* ``poll`` first expires what timed out by ``now``; requests decided during an event are
  handed out by the next ``poll``, so call it after every event.
* ``Reply`` answers a FIND_NODE / GET_PROVIDERS with the peers it named (and provider
  records); for an ADD_PROVIDER, which has no answer in the protocol, ``Reply()`` means the
  driver delivered it (go's ``PutProviderAddrs`` returning nil). ``Failure`` carries the
  driver's error text (dial error, stream reset, bad message...).
* An outcome for a request that timed out, was abandoned, or arrives once the machine is
  done is ignored; one for a request never handed out is a driver bug (ValueError).
* Time must not go backwards (ValueError).
* ``returnable``: the caller may be answered (optimistic provide answers after 15 stores
  while the rest finish); for the other machines it is ``done``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

from .keyspace import PeerRef

RequestKind = Literal["find_node", "get_providers", "add_provider"]

RPC_NAMES: dict[str, str] = {"find_node": "FIND_NODE", "get_providers": "GET_PROVIDERS",
                             "add_provider": "ADD_PROVIDER"}
"""``Request.kind`` → the kad-dht message type name (the protobuf enum names), as traces
count requests and the wire encodes them."""


@dataclass(frozen=True, slots=True)
class Request:
    """An RPC the driver must send to ``peer``: FIND_NODE / GET_PROVIDERS / ADD_PROVIDER.
    ``key``: the key bytes to ask for; None means the key of the operation (the one the
    driver started it for)."""

    peer: PeerRef
    kind: RequestKind
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A request succeeded: the peers the answer named and, for GET_PROVIDERS, the provider
    records it carried (both empty for a delivered ADD_PROVIDER)."""

    closer: Sequence[PeerRef] = ()
    providers: Sequence[PeerRef] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    """A request failed; ``error`` is the driver's text for why."""

    error: str = ""


Outcome = Reply | Failure
"""What came of one request."""

DELIVERED = Reply()
"""The outcome of an ADD_PROVIDER written to its peer."""

R_co = TypeVar("R_co", covariant=True)


@runtime_checkable
class Machine(Protocol[R_co]):
    """A sans-IO engine operation (the rules: the module docstring)."""

    def poll(self, now: float) -> list[Request]:
        """Expire timeouts, then return the requests to send now."""
        ...

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        """What came of ``request``, handed out by an earlier ``poll``."""
        ...

    def next_deadline(self) -> float | None:
        """When the driver must ``poll`` even if nothing arrives (None: nothing awaited)."""
        ...

    @property
    def done(self) -> bool: ...

    @property
    def returnable(self) -> bool: ...

    @property
    def result(self) -> R_co: ...
