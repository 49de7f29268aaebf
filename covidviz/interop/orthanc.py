"""A throwaway Orthanc (Debian's ``orthanc`` with ``orthanc-dicomweb``) on this machine, for the local demo and
the tests: a temporary JSON configuration and storage directory, free ports, HTTP on localhost only
(``RemoteAccessAllowed`` off: Orthanc 1.10 has no bind-address option, it refuses other hosts instead),
the DICOM listener off (only DICOMweb is used), and everything deleted when it stops.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOMWEB_ROOT = "/dicom-web/"
START_TIMEOUT_S = 30.0


class OrthancUnavailable(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed, or it did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_parts() -> list[str]:
    """What this machine lacks to start a local Orthanc with DICOMweb (empty when nothing)."""
    return [str(p) for p in (ORTHANC, DICOMWEB_PLUGIN) if not p.exists()]


@dataclass
class LocalOrthanc:
    """``with LocalOrthanc() as pacs: pacs.dicomweb_url ...``: started on enter, stopped and deleted on exit.

    ``credentials`` (user, password) switch HTTP basic authentication on, as a hospital's server would have it.
    """

    credentials: tuple[str, str] | None = None
    http_port: int = 0
    workdir: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    _own_workdir: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + DICOMWEB_ROOT.rstrip("/")

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "orthanc.log"

    def configuration(self) -> dict:
        assert self.workdir is not None
        storage = str(self.workdir / "storage")
        config = {
            "Name": "covidviz-local", "StorageDirectory": storage, "IndexDirectory": storage,
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "DicomServerEnabled": False, "DicomPort": free_port(), "DicomAet": "COVIDVIZ",
            "Plugins": [str(DICOMWEB_PLUGIN)], "SaveJobs": False, "HttpDescribeErrors": True,
            "StableAge": 1, "ConcurrentJobs": 1, "HttpThreadsCount": 8,
            "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": False, "Ssl": False,
                         "Host": f"127.0.0.1:{self.http_port}"},
            "AuthenticationEnabled": self.credentials is not None,
        }
        if self.credentials is not None:
            config["RegisteredUsers"] = {self.credentials[0]: self.credentials[1]}
        return config

    def start(self) -> LocalOrthanc:
        missing = missing_parts()
        if missing:
            raise OrthancUnavailable(f"Orthanc with DICOMweb is not installed here (missing {', '.join(missing)}); "
                                     "on Debian: apt-get install orthanc orthanc-dicomweb")
        if self.workdir is None:
            self.workdir, self._own_workdir = Path(tempfile.mkdtemp(prefix="covidviz-orthanc-")), True
        self.http_port = self.http_port or free_port()
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.configuration(), indent=2))
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen([str(ORTHANC), str(config_path)], cwd=self.workdir, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_until_it_answers()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        request = urllib.request.Request(self.url + "/system")
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise OrthancUnavailable(f"Orthanc exited with status {self.process.returncode}: "
                                         f"{self.log_path.read_text()[-1500:]}")
            try:
                with urllib.request.urlopen(request, timeout=1) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise OrthancUnavailable(f"Orthanc did not answer within {START_TIMEOUT_S:.0f} s: "
                                 f"{self.log_path.read_text()[-1500:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def environment_for(orthanc: LocalOrthanc) -> dict[str, str]:
    """The settings that point covidviz at this Orthanc (what a user would export in a shell)."""
    env = {"COVIDVIZ_DICOMWEB_URL": orthanc.dicomweb_url}
    if orthanc.credentials is not None:
        env["COVIDVIZ_DICOMWEB_USER"], env["COVIDVIZ_DICOMWEB_PASSWORD"] = orthanc.credentials
    return env

