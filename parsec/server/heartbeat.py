"""The server's ``nodes_ecs`` row: registered once the database answers, a heartbeat while
the server is ready, a fresh row after a scheduler marked it offline, marked offline at a
graceful stop. Runs on the server's asyncio loop (asyncpg).

Heartbeats are written only while ready: the scheduler discovers nodes by them. If the
scheduler marked this node offline and it is ready again, it registers a fresh row rather
than silently clearing the mark (a deliberate, visible re-admission).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from parsec.config import DatabaseSettings
from parsec.server.status import ServerStatus
from parsec.store.db import NodeInfo, Repository, connect_pool
from parsec.store.migrations import apply_migrations

log = logging.getLogger("parsec.server")


class Registration:
    """One server's row and heartbeats; ``status`` (shared with the runtime) shows them."""

    def __init__(self, database: DatabaseSettings, status: ServerStatus, *, heartbeat_interval: float,
                 retire_same_cmd: bool = False) -> None:
        self.database = database
        self.status = status
        self.heartbeat_interval = heartbeat_interval
        self.retire_same_cmd = retire_same_cmd  # rows with our cmd are earlier incarnations (a Ray actor's)
        self.pool: asyncpg.Pool | None = None
        self.repo: Repository | None = None

    async def run(self, node_info: Callable[[], NodeInfo], is_ready: Callable[[], bool]) -> None:
        """Connect (every 5 s until the database answers; migrations applied), register
        ``node_info()``, then heartbeat every ``heartbeat_interval`` while ``is_ready()``;
        until cancelled."""
        while self.pool is None:
            try:
                self.pool = await connect_pool(self.database)
                await apply_migrations(self.pool)
            except Exception as error:
                self.pool = None
                self.status.error = f"database: {error}"
                log.warning("%s; retrying in 5s", self.status.error)
                await asyncio.sleep(5)
        self.repo = Repository(self.pool)
        info = node_info()
        self.status.node_id = await self.repo.insert_node(info)
        if self.retire_same_cmd:
            try:
                await self.repo.retire_other_rows(info.cmd, self.status.node_id)
            except Exception as error:  # the scheduler's readiness check marks them later
                log.warning("could not mark earlier rows of %r offline: %s", info.cmd, error)
        while True:
            if is_ready():
                try:
                    if not await self.repo.heartbeat(self.status.node_id):
                        log.warning("node %s was marked offline; registering again", self.status.node_id)
                        self.status.node_id = await self.repo.insert_node(info)
                        await self.repo.heartbeat(self.status.node_id)
                    self.status.heartbeats += 1
                except Exception as error:  # a database outage must not end the server
                    log.warning("heartbeat failed: %s", error)
                await asyncio.sleep(self.heartbeat_interval)
            else:
                await asyncio.sleep(0.5)

    @property
    def registered(self) -> bool:
        return self.repo is not None and self.status.node_id is not None

    async def mark_offline(self) -> None:
        """Set ``offline_since`` on our row (a graceful stop)."""
        await self.repo.mark_offline([self.status.node_id])
