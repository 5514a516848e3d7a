"""A three-node RabbitMQ cluster of the tests' own, behind a TCP load balancer (HAProxy).

Each node has its own name (``c<run>-<i>@localhost``), AMQP and distribution ports, data and
log directories; all three share one HOME, so one Erlang cookie, which ``rabbitmqctl`` reads
too. The nodes boot in parallel; nodes 2 and 3 join node 1 while they boot (classic peer
discovery, which saves a ``stop_app``, ``join_cluster``, ``start_app`` round per node).
Clients reach the cluster through one HAProxy listener in ``mode tcp`` with an AMQP-level
health check, as a Kubernetes Service (or a cloud load balancer) in front of the broker's pods
would: aio-pika takes one URL.

The shared broker on 5672/25672 is never touched: only the beams whose environment names one
of this cluster's nodes are ever signalled. Everything lives under one directory, removed at
the end.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.ports import free_port
from tests.tls_broker import rabbitmq_script

SIZE = 3
DEPLOYED_SETTINGS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "cluster.conf"
STARTUP_TIMEOUT_SECONDS = 180
STOP_TIMEOUT_SECONDS = 60
CTL_TIMEOUT_SECONDS = 60
AMQP_HEARTBEAT_SECONDS = 10  # the clients' URL asks for it; dead peers show within ~2 beats
# HAProxy: a node is out after 2 failed checks a second apart and back after 2 good ones; a
# session to a node marked down is cut, so its clients reconnect to a live node at once.
# The client/server timeouts exceed the heartbeat, or idle AMQP connections would be cut.
HAPROXY_TIMEOUT_SECONDS = 6 * AMQP_HEARTBEAT_SECONDS
# The check speaks AMQP: the protocol header, then the start of connection.start (class 10,
# method 10, version 0-9). A TCP connect alone succeeds on a suspended node: the kernel
# accepts for it.
AMQP_PROTOCOL_HEADER_HEX = "414d515000000901"
CONNECTION_START_HEX = "000a000a0009"
# A client's connection name as it shows among its client properties.
_CONNECTION_NAME = re.compile(r'"((?:recon|e2e)-[\w.:-]+)"')


@dataclass
class Node:
    """One RabbitMQ node of the cluster: its name, ports, files and the process running it."""

    index: int
    name: str
    port: int
    dist_port: int
    directory: Path
    env: dict[str, str] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        return Path(self.env["RABBITMQ_PID_FILE"])


@dataclass(frozen=True)
class Timings:
    """Seconds the cluster took to come up, measured by the harness."""

    boot: float  # the three nodes booted in parallel (2 and 3 join 1 as they boot)
    join: float  # after the boot, until node 1 counted three running nodes
    balancer: float  # HAProxy saw every node up
    total: float


class CtlError(RuntimeError):
    """A ``rabbitmqctl`` (or ``rabbitmq-queues``) command failed."""


def _environment(home: Path, node: Node | None = None) -> dict[str, str]:
    """Nothing read from the system node's files; the cluster's HOME holds the cookie."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RABBITMQ_", "ERL_")) and key not in {"HOME", "CONF_ENV_FILE"}
    }
    env = {
        **inherited,
        "HOME": str(home),
        "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    if node is not None:
        env.update(
            {
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_PORT": str(node.port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_CONFIG_FILE": str(node.directory / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.directory / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.directory / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.directory / "log"),
                "RABBITMQ_PID_FILE": str(node.directory / "rabbitmq.pid"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
            }
        )
    return env


def node_config(port: int, user: str, password: str, seed: str | None) -> str:
    """This machine's ports and login, then ``deploy/rabbitmq/cluster.conf`` as it is.

    A node with a ``seed`` joins it at its first boot (classic peer discovery), retrying until
    the seed answers: the three boot in parallel and the seed may be the slowest. The seed
    itself lists no peer, so it never waits and two fresh nodes never form two clusters.
    """
    discovery = (
        [
            "cluster_formation.peer_discovery_backend = classic_config",
            f"cluster_formation.classic_config.nodes.1 = {seed}",
            f"cluster_formation.discovery_retry_limit = {STARTUP_TIMEOUT_SECONDS}",
            "cluster_formation.discovery_retry_interval = 1000",
            "cluster_formation.randomized_startup_delay_range.min = 0",
            "cluster_formation.randomized_startup_delay_range.max = 0",
        ]
        if seed
        else []
    )
    return "\n".join(
        [
            *discovery,
            f"listeners.tcp.default = 127.0.0.1:{port}",
            f"default_user = {user}",
            f"default_pass = {password}",
            "log.console = false",
            "log.file.level = info",
            DEPLOYED_SETTINGS.read_text(),
        ]
    )


def haproxy_config(port: int, nodes: Sequence[Node], stats_socket: Path) -> str:
    """``mode tcp`` over the three AMQP ports, each checked at the AMQP level every second."""
    timeout = f"{HAPROXY_TIMEOUT_SECONDS}s"
    servers = [
        f"  server {node.name.split('@')[0]} 127.0.0.1:{node.port} check inter 1s fall 2 rise 2"
        " on-marked-down shutdown-sessions"
        for node in nodes
    ]
    return "\n".join(
        [
            "global",
            f"  stats socket {stats_socket} mode 600 level admin",
            "  maxconn 4096",
            "defaults",
            "  mode tcp",
            "  timeout connect 2s",
            f"  timeout client {timeout}",
            f"  timeout server {timeout}",
            "  timeout check 2s",
            "  retries 3",
            "  option redispatch",
            "listen amqp",
            f"  bind 127.0.0.1:{port}",
            "  balance leastconn",
            "  option tcp-check",
            "  tcp-check connect",
            f"  tcp-check send-binary {AMQP_PROTOCOL_HEADER_HEX}",
            f"  tcp-check expect binary {CONNECTION_START_HEX}",
            *servers,
            "",
        ]
    )


def beam_pids(node_name: str) -> list[int]:
    """Every ``beam.smp`` whose environment names ``node_name``: this node, and nothing else."""
    wanted = f"RABBITMQ_NODENAME={node_name}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "beam.smp":
                continue
            if wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


class RabbitCluster:
    """Start, join, break, heal and stop three RabbitMQ nodes and their load balancer."""

    def __init__(self, directory: Path, run: str) -> None:
        server, ctl, queues = (
            rabbitmq_script(name) for name in ("rabbitmq-server", "rabbitmqctl", "rabbitmq-queues")
        )
        haproxy = shutil.which("haproxy")
        if server is None or ctl is None or queues is None or haproxy is None:
            raise FileNotFoundError("rabbitmq-server, rabbitmqctl, rabbitmq-queues, haproxy")
        self.server, self.ctl_script, self.queues_script, self.haproxy = (
            server,
            ctl,
            queues,
            haproxy,
        )
        self.directory = directory
        self.home = directory / "home"
        self.user = f"recon-cluster-{run}"
        self.password = secrets.token_hex(16)
        self.lb_port = free_port()
        self.nodes = [self._node(directory, run, i) for i in range(1, SIZE + 1)]
        self.balancer: subprocess.Popen[bytes] | None = None
        self.timings: Timings | None = None

    def _node(self, directory: Path, run: str, index: int) -> Node:
        node_dir = directory / f"node{index}"
        node = Node(index, f"c{run}-{index}@localhost", free_port(), free_port(), node_dir, {})
        node.env = _environment(self.home, node)
        return node

    # ------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """The clients' AMQP URL: the load balancer, with the heartbeat the deployment uses."""
        login = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{login}@127.0.0.1:{self.lb_port}/?heartbeat={AMQP_HEARTBEAT_SECONDS}"

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # ------------------------------------------------------------ commands

    def _run(self, script: Path, node: str, *args: str, timeout: float) -> str:
        try:
            result = subprocess.run(
                [str(script), "-n", node, *args],
                env=_environment(self.home),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CtlError(
                f"{script.name} -n {node} {' '.join(args)}: no answer in {timeout} s"
            ) from exc
        if result.returncode != 0:
            raise CtlError(
                f"{script.name} -n {node} {' '.join(args)}: {result.stdout}{result.stderr}"
            )
        return result.stdout

    def ctl(self, node: str, *args: str, timeout: float = CTL_TIMEOUT_SECONDS) -> str:
        return self._run(self.ctl_script, node, *args, timeout=timeout)

    def queues(self, node: str, *args: str, timeout: float = CTL_TIMEOUT_SECONDS) -> str:
        return self._run(self.queues_script, node, *args, timeout=timeout)

    def live_nodes(self) -> list[Node]:
        """The nodes whose beam runs (suspended ones too: ask ``answering`` for those)."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def leader(self, queue: str, *, ask: Sequence[Node] | None = None) -> str | None:
        """The node leading quorum queue ``queue`` (vhost ``/``): the one of ``ask`` (default:
        the running ones) that lists it among its local queues; None while none does.

        ``list_queues --local`` asks only the node itself, so a suspended peer cannot make the
        question hang, as a cluster-wide listing does.
        """
        for node in ask if ask is not None else self.live_nodes():
            try:
                out = self.ctl(node.name, "-q", "list_queues", "--local", "name", timeout=20)
            except (CtlError, subprocess.TimeoutExpired):
                continue
            if queue in (line.strip() for line in out.splitlines()):
                return node.name
        return None

    def members(self, queue: str, node: Node) -> tuple[list[str], list[str]]:
        """(members, online members) of quorum queue ``queue``, as ``node`` sees them."""
        out = self.ctl(node.name, "-q", "list_queues", "name", "members", "online")
        for line in out.splitlines():
            parts = line.split("\t")
            if parts[0] == queue and len(parts) == 3:
                return _erlang_list(parts[1]), _erlang_list(parts[2])
        return [], []

    def client_names(self, node: Node) -> list[str]:
        """The ``connection_name`` of every client connected to ``node`` (unnamed: ``?``)."""
        out = self.ctl(node.name, "-q", "list_connections", "client_properties", timeout=20)
        names = []
        for line in out.splitlines()[1:]:
            found = _CONNECTION_NAME.search(line)
            names.append(found.group(1) if found else "?")
        return sorted(names)

    def running_nodes(self, node: Node) -> list[str]:
        """The cluster's running nodes as ``node`` sees them."""
        out = self.ctl(node.name, "-q", "eval", "rabbit_nodes:all_running().", timeout=20)
        return _erlang_list(out)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Timings:
        """Boot the three nodes in parallel, join 2 and 3 to 1, start HAProxy; time each step."""
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "rabbitmq-env.conf").write_text("")
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            seed = None if node is self.nodes[0] else self.nodes[0].name
            (node.directory / "rabbitmq.conf").write_text(
                node_config(node.port, self.user, self.password, seed)
            )
            (node.directory / "enabled_plugins").write_text("[].\n")
            self.boot(node, wait=False)
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(self.wait_booted, self.nodes))
        booted = time.monotonic()
        self.wait_clustered(timeout=STARTUP_TIMEOUT_SECONDS)
        # A node that joined while booting may still count a feature flag as disabled that
        # the others enabled (seen: quorum_queue on 3.10), and then refuses to declare a
        # quorum queue; enabling every flag on every node settles it (a no-op where enabled).
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(lambda n: self.ctl(n.name, "enable_feature_flag", "all"), self.nodes))
        joined = time.monotonic()
        self._start_balancer()
        self.wait_balanced(timeout=60)
        done = time.monotonic()
        self.timings = Timings(booted - started, joined - booted, done - joined, done - started)
        return self.timings

    def boot(self, node: Node, *, wait: bool = True) -> None:
        """Start ``node``'s ``rabbitmq-server`` (again, after a kill: its data is kept)."""
        node.pid_file.unlink(missing_ok=True)
        with (node.directory / "server.out").open("ab") as out:
            node.process = subprocess.Popen(
                [str(self.server)],
                env=node.env,
                cwd=node.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait:
            self.wait_booted(node)

    def wait_booted(self, node: Node) -> None:
        """``rabbitmqctl wait``: the node runs and the rabbit application has started."""
        try:
            self.ctl(node.name, "wait", str(node.pid_file), timeout=STARTUP_TIMEOUT_SECONDS)
        except (CtlError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{node.name} did not start: {exc}\n{self.log_tail(node)}") from exc

    def wait_clustered(self, *, timeout: float) -> None:
        """Until node 1 counts all three nodes running."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                running = self.running_nodes(self.nodes[0])
            except (CtlError, subprocess.TimeoutExpired):
                running = []
            if len(running) == SIZE:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the nodes did not form one cluster: {running}")
            time.sleep(0.5)

    def _start_balancer(self) -> None:
        config = self.directory / "haproxy.cfg"
        config.write_text(haproxy_config(self.lb_port, self.nodes, self.stats_socket))
        with (self.directory / "haproxy.out").open("ab") as out:
            self.balancer = subprocess.Popen(
                [self.haproxy, "-db", "-f", str(config)],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def stats_socket(self) -> Path:
        return self.directory / "haproxy.sock"

    def balancer_states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it (``UP``, ``DOWN``, ``UP 1/2``...)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(str(self.stats_socket))
                sock.sendall(b"show stat\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        except OSError:
            return {}
        states: dict[str, str] = {}
        lines = data.decode(errors="replace").splitlines()
        if not lines:
            return {}
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
                states[row["svname"]] = row.get("status", "")
        return states

    def wait_balanced(self, *, timeout: float) -> None:
        """Until HAProxy counts every node up."""
        deadline = time.monotonic() + timeout
        while True:
            if self.balancer is not None and self.balancer.poll() is not None:
                out = (self.directory / "haproxy.out").read_text(errors="replace")
                raise RuntimeError(f"haproxy exited: {out}")
            states = self.balancer_states()
            if len(states) == SIZE and all(s == "UP" for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy does not see every node up: {states}")
            time.sleep(0.2)

    def kill(self, node: Node) -> list[int]:
        """``kill -9`` the node's beam (found by node name), as a crash or an OOM kill would."""
        pids = beam_pids(node.name)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            with suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=30)
        return pids

    def suspend(self, node: Node) -> list[int]:
        """SIGSTOP the node's beam: it holds its sockets and answers nothing, like a partition."""
        pids = beam_pids(node.name)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def resume(self, node: Node) -> None:
        for pid in beam_pids(node.name):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop every node and HAProxy; kill -9 whatever of ours is left; remove the files."""
        for node in self.nodes:
            self.resume(node)  # a suspended beam cannot stop
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(self._stop_node, self.nodes))
        if self.balancer is not None and self.balancer.poll() is None:
            self.balancer.terminate()
            try:
                self.balancer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.balancer.kill()
                self.balancer.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_node(self, node: Node) -> None:
        if beam_pids(node.name):
            with suppress(CtlError, subprocess.TimeoutExpired):
                self.ctl(node.name, "stop", timeout=STOP_TIMEOUT_SECONDS)
        self.kill(node)  # leftovers, by this node's name only
        if node.process is not None and node.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait()

    def log_tail(self, node: Node, lines: int = 30) -> str:
        found: list[str] = []
        for path in [node.directory / "server.out", *(node.directory / "log").glob("*.log")]:
            with suppress(OSError):
                found += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(found)


def _erlang_list(text: str) -> list[str]:
    """``[rabbit@a,rabbit@b]`` or ``['c1-1@localhost']`` as a list of node names."""
    inner = text.strip().strip("[]")
    return [part.strip().strip("'") for part in inner.split(",") if part.strip()]


@contextmanager
def running_cluster(directory: Path, run: str) -> Iterator[RabbitCluster]:
    """A started cluster, stopped and removed afterwards whatever happened."""
    cluster = RabbitCluster(directory, run)
    try:
        timings = cluster.start()
        print(
            f"\n[cluster] 3 RabbitMQ nodes up in {timings.total:.1f} s (boot {timings.boot:.1f} s"
            f", join {timings.join:.1f} s, balancer {timings.balancer:.1f} s)",
            flush=True,
        )
        yield cluster
    finally:
        cluster.stop()
