"""The parsec server as a plain class for a Ray actor (options applied in parsec.deploy).

Constructing it starts the server, so when Ray restarts a crashed actor the new instance
comes back by itself: a new peer, a new ``nodes_ecs`` row, joined the honest way.
"""

from __future__ import annotations

import logging
import sys

from pydantic import BaseModel, Field

from parsec.config import DatabaseSettings, NetworkSettings, ServerSettings
from parsec.server.runtime import ServerRuntime


class ServerActorConfig(BaseModel):
    """Everything a server actor needs, typed, so a deploy job validates before placing."""

    name: str
    server: ServerSettings
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bootstrap: list[str] | None = None


class ParsecServerActor:
    def __init__(self, config: ServerActorConfig) -> None:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        self.config = config
        cmd = f"ray actor {config.name} (fleet {config.server.fleet})"
        self.runtime = ServerRuntime(config.server, config.network, config.database,
                                     bootstrap=config.bootstrap, cmd=cmd)
        self.runtime.start()

    def status(self) -> dict:
        status = self.runtime.refresh_status()
        return {**status.__dict__, "name": self.config.name, "fleet": self.config.server.fleet}

    def stop(self) -> None:
        self.runtime.stop()
