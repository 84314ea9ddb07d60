"""Install -> provision -> start, as on a Pi as far as this machine allows: deploy/install.sh
with its real venv path (an offline bundle made from this machine, tests/wheelhouse.py)
into a root tree owned as on a station, `spbu provision` as root, then `check-config`,
`agent run` and `agent status` as a non-root service user (nobody, as the unit's
User=spbu would be), against a private broker, the relay board's firmware and a scanner
on pseudo-terminals."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.broker import MosquittoBroker
from simulators.hq import HeadquartersSim, synthetic_registry
from simulators.relay_board import RelayBoardSim
from simulators.scanner import ScannerSim
from tests.wheelhouse import build

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """A root tree laid out by install.sh --bundle --user nobody (one per module: ~30 s)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to own the tree as a station does and run as another user")
    # Not under pytest's 0700 temp dirs: the service user must be able to traverse to it.
    base = Path(tempfile.mkdtemp(prefix="spbu-station-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        build(ROOT, base / "bundle")
        subprocess.run([str(ROOT / "deploy" / "install.sh"), "--root", str(base / "root"), "--no-apt",
                        "--bundle", str(base / "bundle"), "--user", "nobody"],
                       check=True, capture_output=True, text=True, timeout=600)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_service_user(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*service_user_prefix(), *map(str, command)], capture_output=True, text=True,
                          timeout=60, check=False)


def service_user_prefix() -> list[str]:
    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def test_install_provision_and_start_as_the_service_user(installed: Path, mosquitto: MosquittoBroker) -> None:
    root = installed / "root"
    etc = root / "etc/spbu"
    spbu = root / "opt/spbu/venv/bin/spbu"
    config = etc / "agent.toml"
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    # Laid out as the unit expects: the config readable by the service's group only.
    assert (config.stat().st_mode & 0o777, grp.getgrgid(config.stat().st_gid).gr_name) == (0o640, group)
    assert pwd.getpwuid((root / "var/lib/spbu").stat().st_uid).pw_name == "nobody"

    # Before provisioning, the example config is refused: its key is public.
    before = as_service_user(spbu, "agent", "check-config", config)
    assert before.returncode != 0 and "example config's public key" in before.stdout + before.stderr, before

    hq = HeadquartersSim(mosquitto.host, mosquitto.port, synthetic_registry(50))
    board = RelayBoardSim(channels=1)
    scanner = ScannerSim()
    hq.start()
    hq.publish_documents()
    board.start()
    agent: subprocess.Popen[str] | None = None
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for device in (board.path, scanner.path):
            os.chmod(device, 0o666)  # udev gives the dialout group; here: open to the service user
        trust = installed / "hq-root.json"
        trust.write_bytes(hq.root_bytes())
        provisioned = subprocess.run([str(spbu), "provision", "--station", "34.401.07", "--zone", "WITA",
                                      "--etc", str(etc), "--data", str(root / "var/lib/spbu"), "--trust", str(trust),
                                      "--port", board.path, "--pump", f"1:solar:{scanner.path}"],
                                     capture_output=True, text=True, timeout=60, check=False)
        assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
        # the station's broker listens on the test's port (a Pi's is 1883)
        config.write_text(config.read_text().replace("port = 1883", f"port = {mosquitto.port}"))
        assert (config.stat().st_mode & 0o777, grp.getgrgid(config.stat().st_gid).gr_name) == (0o640, group)

        checked = as_service_user(spbu, "agent", "check-config", config)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "34.401.07" in checked.stdout

        notify_path = installed / "notify.sock"
        notify.bind(str(notify_path))
        os.chmod(notify_path, 0o666)
        notify.settimeout(30)
        agent = subprocess.Popen([*service_user_prefix(), str(spbu), "agent", "run", "--config", str(config)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "NOTIFY_SOCKET": str(notify_path)})
        try:
            first = notify.recv(4096).decode()
        except TimeoutError:
            agent.kill()
            pytest.fail(f"no READY from the agent: {agent.communicate()[1][-3000:]}")
        assert first.startswith("READY=1"), first

        deadline = time.monotonic() + 20
        status = as_service_user(spbu, "agent", "status", "--config", config)
        while time.monotonic() < deadline and ("MISSING" in status.stdout or status.returncode != 0):
            time.sleep(0.5)
            status = as_service_user(spbu, "agent", "status", "--config", config)
        assert status.returncode == 0 and "MISSING" not in status.stdout, status.stdout + status.stderr
        assert "station 34.401.07" in status.stdout and "pump controller" in status.stdout
        journal = root / "var/lib/spbu/journal.sqlite"
        assert pwd.getpwuid(journal.stat().st_uid).pw_name == "nobody"
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                _out, err = agent.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                agent.kill()
                _out, err = agent.communicate()
        notify.close()
        hq.close()
        board.close()
        scanner.close()
    assert agent is not None and agent.returncode == 0, err[-3000:]
    # It spoke up: what it found at start, at the default level, without -v.
    assert "INFO" in err and "station 34.401.07 (WITA)" in err, err[-3000:]
    assert not board.relay_closed(0)
