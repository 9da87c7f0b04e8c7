"""Testbed peers of other implementations, hosted by an external program.

The Go program (``testbed/go``, go-libp2p-kad-dht) and the Node.js program (js-libp2p
kad-dht) each host many DHT server peers in one process and speak one control protocol,
JSON lines over stdin/stdout:

- start: ``PROGRAM --peers N --host 127.0.0.1 --protocol-prefix /ipfs [--seed S]
  [--latency FILE] [--port P]`` (P: the first peer's TCP port; the others' are random);
  once every peer listens the program prints
  ``{"event":"listening","peers":[{"id":"<base58>","addrs":["/ip4/…/tcp/…"]}, …]}``
  (extra fields are kept in ``ExternalPeers.info``).
- then one command per line, each with an ``id`` echoed in its reply
  ``{"id":…,"ok":true,…}`` / ``{"id":…,"ok":false,"error":"…"}``; the program handles
  commands concurrently and replies in any order:
  ``fill`` (peers: the whole testbed; fills every routing table directly),
  ``provide`` (peer index, hex multihash key → duration_ns, error),
  ``find_first_provider`` (peer index, key, timeout_s → duration_ns, provider, error),
  ``bootstrap``, ``leave`` (peer index: that peer stops, dials to it are refused) and
  ``rejoin`` (peer index, timeout_s: it restarts with the same key and port, its table
  refilled from the last fill list, then its own self-lookup → rt_size, error) for churn,
  ``stats`` (``offline``: peers that left), ``stop``. EOF on stdin also stops the program.
  A command on an offline peer is refused (ok false).

``ExternalPeers`` is that protocol's client: one reader thread matches replies to
requests by id, so any number of threads (a Ray actor's, say) may call it at once.
A DHT failure (provide error, provider not found) is a normal reply with ``error`` set;
``ExternalPeersError`` means the program refused the command, died or did not answer.

Seeds: each program derives identities from its seed alone, so two processes of one
testbed need different seeds.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import shutil
import subprocess
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import multiaddr
from libp2p.peer.id import ID

from parsec.net.wire import WirePeer

log = logging.getLogger("parsec.net.external")

REPO_ROOT = Path(__file__).resolve().parents[2]
GO_BINARY = REPO_ROOT / "testbed" / "go" / "bin" / "parsec-go-peers"
GO_BINARY_ENV = "PARSEC_GO_PEERS_BIN"
STDERR_TAIL_LINES = 40
REPLY_MARGIN = 30.0  # seconds a reply may lag behind the operation's own timeout


class ExternalPeersError(RuntimeError):
    """The external program refused a command, died, or did not answer in time."""


def go_command(binary_path: Path | str | None = None) -> list[str]:
    """The command of the Go testbed program (``testbed/go/bin/parsec-go-peers``).

    Looks at ``binary_path``, then ``$PARSEC_GO_PEERS_BIN``, then the repository's build
    output; raises ``FileNotFoundError`` telling how to build it.
    """
    candidate = Path(binary_path or os.environ.get(GO_BINARY_ENV) or GO_BINARY)
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise FileNotFoundError(
            f"Go testbed program not found at {candidate}: run scripts/build-go.sh "
            "(needs the Go toolchain and the Go module proxy)")
    return [str(candidate)]


JS_DIR = REPO_ROOT / "testbed" / "js"


def js_command() -> list[str]:
    """The Node.js testbed program under the Node 20 polyfill (absolute paths: any cwd)."""
    if not (JS_DIR / "node_modules").is_dir():
        raise FileNotFoundError(f"Node.js testbed program not installed in {JS_DIR}: run scripts/build-js.sh")
    return ["node", "--import", str(JS_DIR / "polyfill.mjs"), str(JS_DIR / "peers.mjs")]


def command_for(implementation: str) -> list[str]:
    """The program hosting peers of ``implementation`` ("go" or "js")."""
    if implementation == "go":
        return go_command()
    if implementation == "js":
        return js_command()
    raise ValueError(f"no external program for implementation {implementation!r} (known: go, js)")


def go_available() -> bool:
    """Whether the Go toolchain is on PATH (scripts/build-go.sh can build the program)."""
    return shutil.which("go") is not None


def wire_peer_from_json(entry: dict) -> WirePeer:
    peer_id = ID.from_base58(entry["id"])
    return WirePeer.of(peer_id, [multiaddr.Multiaddr(text) for text in entry.get("addrs", [])])


def wire_peer_to_json(peer: WirePeer) -> dict:
    return {"id": ID(peer.peer_id).to_base58(), "addrs": [str(addr) for addr in peer.multiaddrs()]}


class ExternalPeers:
    """Many DHT peers of another implementation in one child process."""

    def __init__(self, command: list[str], *, peers: int, protocol_prefix: str = "/ipfs",
                 latency_file: Path | str | None = None, seed: int | None = None, name: str = "external",
                 host: str = "127.0.0.1", start_timeout: float = 120.0, env: dict[str, str] | None = None,
                 cwd: Path | str | None = None, extra_args: list[str] | None = None) -> None:
        if peers < 1:
            raise ValueError("peers must be at least 1")
        self.command = list(command)
        self.peers_requested = peers
        self.protocol_prefix = protocol_prefix
        self.latency_file = Path(latency_file) if latency_file else None
        self.seed = seed
        self.name = name
        self.host = host
        self.start_timeout = start_timeout
        self.env = env  # added to os.environ
        self.cwd = Path(cwd) if cwd else None  # e.g. node needs its package directory
        self.extra_args = list(extra_args or [])
        self.peers: list[WirePeer] = []
        self.info: dict[str, Any] = {}  # the listening event, as the program sent it
        self._proc: subprocess.Popen | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()  # _pending and lifecycle
        self._write_lock = threading.Lock()  # one command line at a time on stdin
        self._listening: Future = Future()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------

    def argv(self) -> list[str]:
        args = [*self.command, "--peers", str(self.peers_requested), "--host", self.host,
                "--protocol-prefix", self.protocol_prefix]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.latency_file is not None:
            args += ["--latency", str(self.latency_file)]
        return args + self.extra_args

    def start(self) -> list[WirePeer]:
        """Spawn the program and wait until every peer listens; returns the peers."""
        if self._proc is not None:
            raise ExternalPeersError(f"{self.name}: already started")
        argv = self.argv()
        env = {**os.environ, **self.env} if self.env else None
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=env, cwd=self.cwd)
        except OSError as error:
            raise ExternalPeersError(f"{self.name}: cannot start {argv[0]}: {error}") from None
        for target, label in ((self._read_stdout, "stdout"), (self._read_stderr, "stderr")):
            thread = threading.Thread(target=target, name=f"{self.name}-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            event = self._listening.result(self.start_timeout)
        except FutureTimeout:
            self._kill()
            raise ExternalPeersError(
                f"{self.name}: no listening line within {self.start_timeout:g}s from {' '.join(argv)}"
                f"{self._stderr_text()}") from None
        except ExternalPeersError:
            self._kill()
            raise
        self.info = event
        self.peers = [wire_peer_from_json(entry) for entry in event.get("peers", [])]
        if len(self.peers) != self.peers_requested:
            self.stop()
            raise ExternalPeersError(f"{self.name}: asked for {self.peers_requested} peers, "
                                     f"the program reported {len(self.peers)}")
        log.info("%s: %d peers listening (pid %s)", self.name, len(self.peers), self._proc.pid)
        return list(self.peers)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the program to stop; kill it if it does not exit in ``timeout`` (idempotent)."""
        with self._lock:
            proc = self._proc
            if proc is None or self._closed:
                return
            self._closed = True
        if proc.poll() is None:
            try:
                self._request({"cmd": "stop"}, timeout=min(timeout, 5.0))
            except ExternalPeersError:
                pass
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s: did not exit within %gs; killing pid %d", self.name, timeout, proc.pid)
                self._kill()
        for thread in self._threads:
            thread.join(2.0)
        self._fail_pending(ExternalPeersError(f"{self.name}: stopped"))
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> ExternalPeers:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._closed

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- commands --------------------------------------------------------------------

    def fill(self, everyone: list[WirePeer], ghosts: int = 0, listing: float = 1.0, timeout: float = 600.0) -> dict:
        """Fill every local routing table directly from the whole testbed's peers; the last
        ``ghosts`` are unreachable ids, each listed by a table with probability ``listing``
        (the programs draw as ``parsec.model.stale.lists`` does)."""
        return self._request({"cmd": "fill", "peers": [wire_peer_to_json(p) for p in everyone], "ghosts": ghosts,
                              "listing": listing}, timeout=timeout)

    def provide(self, peer_index: int, key: bytes, timeout: float = 180.0) -> dict:
        """Peer ``peer_index`` provides ``key`` (a sha2-256 multihash) with its own DHT code."""
        return self._request({"cmd": "provide", "peer": peer_index, "key": key.hex(), "timeout_s": timeout},
                             timeout=timeout + REPLY_MARGIN)

    def find_first_provider(self, peer_index: int, key: bytes, timeout: float = 60.0) -> dict:
        """Time to the first provider record of ``key`` from peer ``peer_index``."""
        return self._request({"cmd": "find_first_provider", "peer": peer_index, "key": key.hex(),
                              "timeout_s": timeout}, timeout=timeout + REPLY_MARGIN)

    def bootstrap(self, peer_index: int, bootstrap: list[WirePeer], timeout: float = 60.0) -> dict:
        """Join the DHT the implementation's own way: dial ``bootstrap``, run its refresh."""
        command = {"cmd": "bootstrap", "peer": peer_index, "peers": [wire_peer_to_json(p) for p in bootstrap],
                   "timeout_s": timeout}
        return self._request(command, timeout + 30)

    def leave(self, peer_index: int, timeout: float = 30.0) -> dict:
        """Churn: peer ``peer_index`` stops (host closed, dials refused); key and port kept."""
        return self._request({"cmd": "leave", "peer": peer_index}, timeout=timeout)

    def rejoin(self, peer_index: int, timeout: float = 30.0) -> dict:
        """Churn: the peer that left restarts (same key and port), is refilled from the last
        fill list and runs its implementation's self-lookup once, bounded by ``timeout``."""
        return self._request({"cmd": "rejoin", "peer": peer_index, "timeout_s": timeout},
                             timeout=timeout + REPLY_MARGIN)

    def stats(self, timeout: float = 30.0) -> dict:
        return self._request({"cmd": "stats"}, timeout=timeout)

    def request(self, command: dict, timeout: float = 60.0) -> dict:
        """Any command of the protocol (``id`` is added); the reply without ``id``/``ok``."""
        return self._request(dict(command), timeout=timeout)

    # -- plumbing ----------------------------------------------------------------------

    def _request(self, command: dict, timeout: float) -> dict:
        future: Future = Future()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ExternalPeersError(f"{self.name}: program not running{self._stderr_text()}")
        with self._lock:
            request_id = next(self._ids)
            self._pending[request_id] = future
        command["id"] = request_id
        line = (json.dumps(command, separators=(",", ":")) + "\n").encode()
        try:
            with self._write_lock:  # apart from _lock: the reader never waits on a long write
                proc.stdin.write(line)
                proc.stdin.flush()
        except (OSError, ValueError) as error:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ExternalPeersError(f"{self.name}: cannot send {command['cmd']}: {error}"
                                     f"{self._stderr_text()}") from None
        try:
            reply = future.result(timeout)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ExternalPeersError(f"{self.name}: no reply to {command['cmd']} within {timeout:g}s") from None
        if not reply.get("ok"):
            raise ExternalPeersError(f"{self.name}: {command['cmd']} failed: {reply.get('error', reply)}")
        return {k: v for k, v in reply.items() if k not in ("id", "ok")}

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("%s: not a protocol line: %.200s", self.name, line)
                continue
            if not isinstance(message, dict):
                continue
            if message.get("event") == "listening":
                if not self._listening.done():
                    self._listening.set_result(message)
                continue
            if "event" in message:
                log.info("%s: event %.500s", self.name, line)
                continue
            with self._lock:
                future = self._pending.pop(message.get("id"), None)
            if future is not None:
                future.set_result(message)
            else:
                log.warning("%s: reply to no pending request: %.200s", self.name, line)
        # EOF: the program exited (or closed stdout).
        try:
            code = proc.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        for thread in self._threads:  # let the stderr tail settle for the error text
            if thread is not threading.current_thread():
                thread.join(1.0)
        error = ExternalPeersError(f"{self.name}: program exited (code {code}){self._stderr_text()}")
        if not self._listening.done():
            self._listening.set_exception(error)
        self._fail_pending(error)

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self._stderr_tail.append(line)
            log.debug("%s stderr: %s", self.name, line)

    def _fail_pending(self, error: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _stderr_text(self) -> str:
        tail = list(self._stderr_tail)
        return ("; stderr tail:\n" + "\n".join(tail)) if tail else ""

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        self._fail_pending(ExternalPeersError(f"{self.name}: killed"))

