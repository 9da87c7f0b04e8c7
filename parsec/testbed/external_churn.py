"""Churn for the Go and js testbed peers: the schedule stays in Python, the programs obey.

The py shard runs ``parsec.model.churn.ChurnSchedule`` on its trio clock; a Go or Node program
hosting many peers gets the same schedule from here, as ``leave`` / ``rejoin`` commands of
its control protocol (``parsec.net.external``). One thread sleeps until the next transition;
leaves are sent at once (they only close a host), rejoins go to a small pool because each
refills a table and runs the implementation's self-lookup, which takes a moment. What
``offline()`` reports is what the program confirmed, not what the schedule intended: a
peer whose restart failed (its port was taken meanwhile) stays offline, as in the py shard.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from parsec.model.churn import ChurnSchedule
from parsec.net.external import ExternalPeers, ExternalPeersError

log = logging.getLogger("parsec.testbed")

REJOIN_TIMEOUT = 30.0  # bound on one rejoin's self-lookup, seconds
REJOIN_WORKERS = 4  # rejoins in flight at once


class ExternalChurn:
    """Drives ``peers`` (a started ``ExternalPeers``) through a churn schedule."""

    def __init__(self, peers: ExternalPeers, median_session: float, seed: str | None = None,
                 clock=time.monotonic) -> None:
        self.peers = peers
        self.clock = clock
        self.schedule = ChurnSchedule(len(peers.peers), median_session, now=clock(), rng=random.Random(seed))
        self._offline: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(REJOIN_WORKERS, thread_name_prefix=f"{peers.name}-rejoin")
        self._thread = threading.Thread(target=self._run, name=f"{peers.name}-churn", daemon=True)
        self.rejoin_failures = 0

    def start(self) -> None:
        self._thread.start()

    def offline(self) -> list[int]:
        """Indexes of the peers that left (confirmed by the program) and are not back."""
        with self._lock:
            return sorted(self._offline)

    def stop(self) -> None:
        """Stop sending orders (peers stay as they are). Rejoins in flight are not waited
        for: stopping the program next fails them at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            at = self.schedule.next_at()
            if at is None:
                return
            if self._stop.wait(max(0.0, at - self.clock())):
                return
            for transition in self.schedule.due(self.clock()):
                if not self.peers.alive:
                    return
                if transition.online:
                    self._pool.submit(self._rejoin, transition.index)
                else:
                    self._leave(transition.index)

    def _leave(self, index: int) -> None:
        try:
            self.peers.leave(index)
        except ExternalPeersError as error:
            log.warning("%s: peer %d could not leave: %s", self.peers.name, index, error)
            return
        with self._lock:
            self._offline.add(index)

    def _rejoin(self, index: int) -> None:
        with self._lock:
            if index not in self._offline:
                return  # its leave failed: nothing to bring back
        try:
            reply = self.peers.rejoin(index, timeout=REJOIN_TIMEOUT)
        except ExternalPeersError as error:
            self.rejoin_failures += 1
            log.warning("%s: peer %d could not come back: %s", self.peers.name, index, error)
            return
        with self._lock:
            self._offline.discard(index)
        if reply.get("error"):
            log.info("%s: peer %d is back, its self-lookup failed: %s", self.peers.name, index, reply["error"])
