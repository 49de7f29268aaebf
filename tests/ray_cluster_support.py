"""A real Ray cluster for the tests, started as a user starts one: ``ray start --head`` (the project's Ray, from
``.venv``) with token authentication on, and a second node joined with ``ray start --address``.

Each ``ray start`` runs with ``--block`` in its own session, so every process it starts is its descendant;
stopping walks those descendants (and anything else naming this cluster's temporary directory, such as the
model workers the raylets start in process groups of their own) and ends them by process id: never
``ray stop``, which would stop every Ray on the machine. The cluster's token is a random one written under the
test's temporary directory, and its nodes run with a home directory of their own, so a token in the machine's
``~/.ray`` plays no part. The head serves Ray's dashboard, with its Jobs API for ``ray job submit``, on a free
port of 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT
from tests.oidc_support import free_port

RAY = ROOT / ".venv" / "bin" / "ray"
OBJECT_STORE_BYTES = 200 * 2**20
START_SECONDS = 240  # a node start takes 10-60 s on the shared 2-core machine


def _node_ports() -> list[str]:
    """Every port a node listens on, chosen free here: two nodes on one machine, beside other developers'
    Rays, must not meet on a default port (and a node given its agents' ports does not wait for port files)."""
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


@dataclass
class LocalCluster:
    """Two nodes of one CPU each, token authentication on, the head's dashboard (Jobs API) at
    ``dashboard_address``; ``environment`` is what its nodes run with."""

    root: Path
    client_port: int = field(default_factory=free_port)
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.temp_dir = self.root / "ray"
        self.home = self.root / "home"  # the nodes' home: no ~/.ray/auth_token there
        self.token_file = self.root / "token"
        self.home.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)

    @property
    def environment(self) -> dict[str, str]:
        """As a user starts a node from the project's activated ``.venv``: its ``bin`` first on ``PATH``, so the
        ``python`` of a ``ray job submit`` entrypoint (run by a shell the node's job manager starts) is the
        project's, and the project importable by ``PYTHONPATH``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        path = os.pathsep.join([str(ROOT / ".venv" / "bin"), env.get("PATH", os.defpath)])
        return {**env, "PATH": path, "HOME": str(self.home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "RAY_USAGE_STATS_ENABLED": "0",
                "COVIDVIZ_DB_URL": self.audit_url}

    @property
    def audit_url(self) -> str:
        """The nodes' audit database (a job through Ray Client records its results on the cluster)."""
        return f"sqlite:///{self.root / 'cluster-audit.sqlite'}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def dashboard_address(self) -> str:
        """The head's dashboard, where ``ray job submit`` sends jobs (bound to 127.0.0.1 only)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        """The head's own address, as ``ray start`` wrote it for this cluster (the node's IP, not 127.0.0.1)."""
        return (self.temp_dir / "ray_current_cluster").read_text().strip()

    def start(self) -> None:
        common = ["--block", "--num-cpus", "1", "--object-store-memory", str(OBJECT_STORE_BYTES),
                  "--disable-usage-stats"]
        self._start_node("head", ["--head", "--port", str(self.gcs_port), "--ray-client-server-port",
                                  str(self.client_port), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                                  "--dashboard-port", str(self.dashboard_port), "--temp-dir",
                                  str(self.temp_dir), *common, *_node_ports()])
        self._start_node("worker", ["--address", self.gcs_address, *common, *_node_ports()])

    def _start_node(self, name: str, args: list[str]) -> None:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(["nice", "-n", "10", str(RAY), "start", *args], stdout=out,
                                       stderr=subprocess.STDOUT, env=self.environment, cwd=self.root,
                                       start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + START_SECONDS
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({name}) did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def pids(self) -> set[int]:
        """Every live process this cluster started: the ``ray start`` processes, their descendants, and any
        process whose command line names this cluster's temporary directory."""
        parents: dict[int, int] = {}
        named: set[int] = set()
        marker = str(self.temp_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                if marker in (entry / "cmdline").read_bytes():
                    named.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        found = {p.pid for p in self.processes if p.poll() is None} | named
        grew = True
        while grew:
            children = {pid for pid, parent in parents.items() if parent in found} - found
            grew = bool(children)
            found |= children
        return found

    def stop(self) -> set[int]:
        """End every process of the cluster by id (TERM, then KILL after a grace period); the ids it ended."""
        ended: set[int] = set()
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 30.0)):
            ended |= self.pids()
            for pid in _alive(ended):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while _alive(ended) and time.monotonic() < deadline:
                for process in self.processes:
                    process.poll()  # reap the ray start processes
                time.sleep(0.2)
        return ended


def _alive(pids: set[int]) -> set[int]:
    """The ids of ``pids`` still running (a zombie, already dead, counts as ended)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.add(pid)
    return out


def local_cluster(root: Path) -> Iterator[LocalCluster]:
    """Start the cluster under ``root``; stop it afterwards whatever happened (also after a failed start)."""
    cluster = LocalCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        left = _alive(cluster.stop())
        assert not left, f"Ray processes still running after stop: {sorted(left)}"
