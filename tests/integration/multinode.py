"""A multi-node Ray cluster on this machine, started the way cluster.yaml starts one.

Every node is a ``scripts/ray-node.sh … --block`` process (its own raylet, object store and
agents) with its own loopback address and ``region:<name>`` resource; stopping kills those
PIDs only — never ``ray stop``, which would end every Ray cluster on the machine.

Loopback addresses other than 127.0.0.1 (127.0.0.11, .12, …): Ray rewrites a bootstrap
address of 127.0.0.1 to the machine's outward IP when multi-node clusters are enabled
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1``, which ``ray start --address`` requires), while
any other loopback address is used as given — and servers on different nodes then show
different addresses in ``nodes_ecs``, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class NodeSpec:
    ip: str
    region: str
    cpus: int
    memory_mb: int


@dataclass
class LocalCluster:
    nodes: list[NodeSpec]
    gcs_port: int = 0
    dashboard_port: int = 0
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"{self.nodes[0].ip}:{self.gcs_port}"

    def env(self, node: NodeSpec) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # not the suite's own head
        env.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1", RAY_AUTH_MODE="disabled",
                   PARSEC_ENV_FILE=os.devnull, PARSEC_NODE_REGION=node.region,
                   PARSEC_RAY_BIN=str(REPO / ".venv" / "bin" / "ray"))
        return env

    def _start(self, node: NodeSpec, args: list[str], log_dir: Path) -> None:
        log = log_dir / f"ray-{node.ip}.log"
        self.logs.append(log)
        command = ["bash", str(REPO / "scripts" / "ray-node.sh"), *args, "--block", "--node-ip-address", node.ip,
                   "--num-cpus", str(node.cpus), "--memory", str(node.memory_mb << 20),
                   # default 52365 is taken by any other Ray node on the machine
                   "--dashboard-agent-listen-port", str(_free_port())]
        with open(log, "w") as out:
            self.processes.append(subprocess.Popen(command, env=self.env(node), stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=False))

    def start(self, log_dir: Path, timeout: float = 90.0) -> None:
        self.gcs_port, self.dashboard_port = _free_port(), _free_port()
        head = self.nodes[0]
        self._start(head, ["head", "--port", str(self.gcs_port), "--dashboard-port", str(self.dashboard_port)], log_dir)
        self._wait(1, timeout)
        for count, node in enumerate(self.nodes[1:], start=2):  # one at a time: two cores start one raylet well
            self._start(node, ["worker", self.gcs_address], log_dir)
            self._wait(count, timeout)
        self._wait_for_job_agent(timeout)

    def _wait_for_job_agent(self, timeout: float) -> None:
        """The head's job agent registers some seconds after the node: until a trivial job
        is accepted, submissions fail with "No available agent"."""
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + timeout
        while True:
            try:
                JobSubmissionClient(self.dashboard).submit_job(entrypoint="true")
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job submission not available: {error}") from None
                time.sleep(1.0)

    def _wait(self, count: int, timeout: float) -> None:
        """Until ``count`` nodes are alive (``ray status`` of this cluster lists them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process, log in zip(self.processes, self.logs):
                if process.poll() is not None:
                    raise RuntimeError(f"ray node exited: {log.read_text()[-2000:]}")
            status = subprocess.run([str(REPO / ".venv" / "bin" / "ray"), "status", "--address", self.gcs_address],
                                    capture_output=True, text=True, env=self.env(self.nodes[0]))
            active = status.stdout.split("Active:")[-1].split("Pending:")[0]
            if status.returncode == 0 and active.count("node_") >= count:
                return
            time.sleep(1.0)
        raise TimeoutError(f"{count} Ray node(s) not up after {timeout:.0f}s")

    def stop(self) -> None:
        """Workers first, then the head: SIGTERM to the PIDs we started, SIGKILL if they linger."""
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
