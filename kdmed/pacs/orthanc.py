"""A development PACS: Debian's Orthanc with its DICOMweb plugin, started and stopped by the project.

    python -m kdmed.pacs.orthanc start --dir tmp/pacs --port 8042   # prints the DICOMweb URL; `make pacs`
    python -m kdmed.pacs.orthanc stop --dir tmp/pacs                # by the PID it wrote; `make pacs-stop`

The configuration is generated into DIR (storage there too): HTTP on PORT with DICOMweb under
/dicom-web/, no DICOM (DIMSE) listener, no authentication, and `RemoteAccessAllowed: false`, so only
clients on this machine get answers. It also asks for `HttpBindAddresses: ["127.0.0.1"]`, which Orthanc
honours from 1.12.10 on; Debian 12's Orthanc 1.10 ignores it, listens on every interface and refuses every
peer but this machine. The tests start their own with `start()` and stop it by PID (`tests/conftest.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kdmed.errors import KdmedError

__all__ = ["OrthancServer", "find_orthanc", "start", "stop"]

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
DICOMWEB_PLUGIN = "libOrthancDicomWeb.so"
INSTALL_HINT = (
    "install Debian's Orthanc with its DICOMweb plugin: apt-get install orthanc orthanc-dicomweb "
    "(`make pacs` does it when run as root)"
)


@dataclass(frozen=True)
class OrthancServer:
    pid: int
    port: int
    folder: Path

    @property
    def url(self) -> str:
        """The DICOMweb root."""
        return f"http://127.0.0.1:{self.port}/dicom-web"

    @property
    def rest(self) -> str:
        """Orthanc's own REST API (deleting instances in tests, statistics)."""
        return f"http://127.0.0.1:{self.port}"


def find_orthanc() -> tuple[str, str]:
    """The Orthanc executable and its DICOMweb plugin, or a KdmedError saying how to install them."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None)
    plugin = next(
        (str(Path(d) / DICOMWEB_PLUGIN) for d in PLUGIN_DIRS if (Path(d) / DICOMWEB_PLUGIN).is_file()), None
    )
    if binary is None or plugin is None:
        raise KdmedError(
            f"Orthanc {'is' if binary is None else 'has no DICOMweb plugin'} missing here; {INSTALL_HINT}"
        )
    return binary, plugin


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(folder: Path, port: int, plugin: str) -> dict:
    storage = folder / "storage"
    return {
        "Name": "kdmed-dev-pacs",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "HttpBindAddresses": ["127.0.0.1"],  # Orthanc >= 1.12.10; older ones ignore it (see the docstring)
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full"},
        "StableAge": 2,
        "HttpTimeout": 30,
        "StorageCompression": False,
    }


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def start(folder: str | Path, port: int = 0, timeout_s: float = 30) -> OrthancServer:
    """Start Orthanc with a generated configuration in `folder` (port 0: a free one); returns when it
    answers. Its PID goes to `folder/orthanc.pid`, its log to `folder/orthanc.log`."""
    binary, plugin = find_orthanc()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    (folder / "orthanc.json").write_text(json.dumps(_config(folder, port, plugin), indent=2))
    log = (folder / "orthanc.log").open("ab")
    process = subprocess.Popen(
        [binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (folder / "orthanc.pid").write_text(f"{process.pid}\n{port}\n")
    deadline = time.monotonic() + timeout_s
    while not _ready(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(folder)
            tail = (folder / "orthanc.log").read_text(errors="replace")[-1500:]
            raise KdmedError(f"Orthanc did not start on port {port}; its log ends:\n{tail}")
        time.sleep(0.2)
    return OrthancServer(process.pid, port, folder)


def stop(folder: str | Path, timeout_s: float = 15) -> bool:
    """Stop the Orthanc whose PID `start` wrote in `folder` (SIGTERM, then SIGKILL); False if none ran."""
    pid_file = Path(folder) / "orthanc.pid"
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a child of this process is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: look it up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "State:\tZ" in status.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdmed.pacs.orthanc", description=__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument(
        "--dir", default="tmp/pacs", help="configuration, storage, PID and log (default: tmp/pacs)"
    )
    parser.add_argument("--port", type=int, default=8042, help="HTTP port (default: 8042)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            server = start(args.dir, args.port)
            print(f"Orthanc PID {server.pid}; DICOMweb at {server.url} (stop: make pacs-stop)")
        else:
            print("stopped" if stop(args.dir) else f"no Orthanc PID file in {args.dir}")
    except KdmedError as error:
        print(f"kdmed pacs: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
