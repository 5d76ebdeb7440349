"""Real redis-server and memcached processes on free loopback ports.

Used by tests/conftest.py and by benchmarks/: each server is started by us,
waited for until it answers, and stopped (or killed, or restarted on the same
port) on demand, so failure tests can take a server away mid-operation.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

PACKAGES = {"redis-server": "redis-server", "redis-cli": "redis-tools", "memcached": "memcached"}


class MissingServer(RuntimeError):
    """A server binary is not installed; the message names the Debian package."""


def require_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/bin")
    if path is None:
        raise MissingServer(
            f"{name} is not installed: run 'sudo apt-get install -y {PACKAGES.get(name, name)}' and retry."
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout}s") from None
            time.sleep(0.01)


@dataclass
class Server:
    """One server process; ``start``/``stop``/``kill`` keep the same port."""

    kind: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)  # appended to the command line

    @property
    def command(self) -> list[str]:
        if self.kind == "redis":
            return [
                require_binary("redis-server"),
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--loglevel", "warning", *self.extra_args,
            ]  # fmt: skip
        return [require_binary("memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64",
                "-u", "root", "-c", "4096"]  # fmt: skip

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0 for Redis, 127.0.0.1:PORT for memcached."""
        if self.kind == "redis":
            return f"redis://127.0.0.1:{self.port}/0"
        return f"127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_redis() -> Server:
    return Server("redis").start()


def start_memcached() -> Server:
    return Server("memcached").start()


@dataclass
class RedisCluster:
    """Cluster-enabled redis-server processes joined by ``redis-cli --cluster create``."""

    nodes: list[Server]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(directory: str, size: int = 3, timeout: float = 30.0) -> RedisCluster:
    """``size`` primaries, no replicas, on free loopback ports; returns once every node says cluster_state:ok.

    ``directory`` holds each node's nodes-PORT.conf (Redis writes it; it must not be shared).
    """
    cli = require_binary("redis-cli")
    nodes = [Server("redis") for _ in range(size)]
    cluster = RedisCluster(nodes)
    try:
        for node in nodes:
            # the bus port defaults to port + 10000, past 65535 for high free ports: choose it too
            node.extra_args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--cluster-config-file",
                               f"{directory}/nodes-{node.port}.conf", "--dir", directory]
            node.start()
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in nodes),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        deadline = time.monotonic() + timeout
        for node in nodes:
            while b"cluster_state:ok" not in subprocess.run(
                [cli, "-p", str(node.port), "cluster", "info"], capture_output=True, timeout=timeout
            ).stdout:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster node {node.port} not ok within {timeout}s")
                time.sleep(0.05)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(1)
        for conn in held:
            conn.close()
        sock.close()
