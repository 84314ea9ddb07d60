"""Deployment: the install script into a temporary root (twice: idempotent), shellcheck,
systemd's own verification of the unit, provisioning, and the agent's sd_notify
behaviour on a fake notify socket, including WATCHDOG stopping when a device task hangs."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from agent.cli.provision import ProvisionError, provision
from agent.config import PumpConfig, StationConfig, load_config
from agent.sdnotify import Notifier
from agent.service import serve
from agent.station import Station
from agent.trust.signing import key_id, public_key_hex
from simulators.broker import MosquittoBroker
from simulators.hq import HeadquartersSim, synthetic_registry
from simulators.relay_board import RelayBoardSim
from simulators.scanner import ScannerSim

ROOT = Path(__file__).resolve().parents[2]


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_install_into_a_temporary_root_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = [str(ROOT / "deploy" / "install.sh"), "--root", str(root), "--no-apt", "--no-venv"]
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    for path in ("etc/spbu/agent.toml", "etc/systemd/system/spbu-agent.service", "etc/udev/rules.d/99-spbu.rules",
                 "etc/systemd/journald.conf.d/spbu.conf", "etc/systemd/system.conf.d/spbu-watchdog.conf",
                 "etc/mosquitto/conf.d/spbu.conf"):
        assert (root / path).is_file(), path
    assert (root / "etc/spbu").stat().st_mode & 0o777 == 0o750
    assert (root / "var/lib/spbu").is_dir()
    load_config(root / "etc/spbu/agent.toml")  # the laid-down config is valid as it is
    (root / "etc/spbu/agent.toml").write_text((root / "etc/spbu/agent.toml").read_text() + "# local edit\n")
    before = tree_digest(root)
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    assert tree_digest(root) == before, "a second run must change nothing, and keep the station's config"


def test_install_refuses_to_touch_the_system_without_root_or_a_tree() -> None:
    # A copy of the script in a directory everyone can traverse: the checkout may sit in
    # /root, a 0700 home or a `mktemp -d`, which `nobody` cannot enter.
    with tempfile.TemporaryDirectory(prefix="spbu-install-") as tmp:
        os.chmod(tmp, 0o755)
        script = Path(tmp) / "install.sh"
        shutil.copy(ROOT / "deploy" / "install.sh", script)
        os.chmod(script, 0o755)
        command = [str(script)]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: the script would install for real")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]  # as nobody
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp)
    assert result.returncode == 1 and "run as root" in result.stderr, result.stderr


def test_an_update_keeps_the_stations_broker_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = [str(ROOT / "deploy" / "install.sh"), "--root", str(root), "--no-apt", "--no-venv"]
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    conf = root / "etc/mosquitto/conf.d/spbu.conf"
    assert "listener 1883 127.0.0.1" in conf.read_text()
    # what docs/deploy.md says after `spbu keys broker-config --out /etc/mosquitto/spbu`
    generated = root / "etc/mosquitto/spbu/spbu.conf"
    generated.parent.mkdir(parents=True)
    generated.write_text("# bridge to headquarters\nconnection hq\n")
    conf.unlink()
    conf.symlink_to(generated)
    done = subprocess.run(run, check=True, capture_output=True, text=True, timeout=60)
    assert conf.is_symlink() and conf.resolve() == generated.resolve(), "the update replaced the broker config"
    assert "kept the station's broker config" in done.stdout
    # a copied (not linked) full config is kept too; only the pre-provisioning file is refreshed
    conf.unlink()
    conf.write_text(generated.read_text())
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    assert conf.read_text() == generated.read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (make test installs it as root)")
def test_scripts_pass_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(ROOT / "deploy" / "install.sh"), str(ROOT / ".ci" / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not available")
def test_unit_file_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "systemd" / "spbu-agent.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ProtectSystem=strict" in unit
    # Verify against this machine's systemd with the entry point pointed at this checkout.
    local = tmp_path / "spbu-agent.service"
    local.write_text(unit.replace("/opt/spbu/venv/bin/spbu", str(Path(sys.executable).parent / "spbu")))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(local.read_text().replace("Type=notify", "Type=notfy"))
    bad = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Failed to parse service type" in bad.stderr  # the check can fail


def test_udev_rules_name_every_device_the_config_expects() -> None:
    rules = (ROOT / "deploy" / "udev" / "99-spbu.rules").read_text()
    config = (ROOT / "deploy" / "agent.example.toml").read_text()
    for name in ("spbu-relay", "spbu-scanner-1", "spbu-scanner-2"):
        assert f'SYMLINK+="{name}"' in rules and f"/dev/{name}" in config
    for line in rules.splitlines():
        if line and not line.startswith("#"):
            assert all(key in line for key in ('SUBSYSTEM==', 'ATTRS{idVendor}==')), line


def test_provision_writes_config_key_csr_and_checks_devices(tmp_path: Path) -> None:
    hq = Ed25519PrivateKey.generate().public_key()
    trust = tmp_path / "hq.pub"
    trust.write_text(public_key_hex(hq) + "\n")
    present = tmp_path / "ttyRELAY"
    present.touch()
    etc = tmp_path / "etc"
    checks = provision("34.401.07", "WITA", etc, tmp_path / "data", [trust], "uart", str(present),
                       ["1:pertalite:/dev/none-scanner-1", "2:solar:" + str(present)])
    config = load_config(etc / "agent.toml")
    assert config.station_id == "34.401.07" and config.zone == "WITA"
    assert config.trusted_keys == {key_id(hq): public_key_hex(hq)}
    assert [(p.number, p.product, p.channel) for p in config.pumps] == [(1, "pertalite", 0), (2, "solar", 1)]
    # Readable by the agent's group (it signs every transaction with it), nobody else.
    assert (etc / "keys/station.key").stat().st_mode & 0o777 == 0o640
    csr = x509.load_pem_x509_csr((etc / "certs/station.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "34.401.07"
    by_item = {c.item: c for c in checks}
    assert by_item["pump controller"].ok and not by_item["scanner pump 1"].ok and by_item["scanner pump 2"].ok
    with pytest.raises(ProvisionError, match="already configures"):
        provision("34.401.08", "WIB", etc, tmp_path / "data", [trust], "uart", str(present), ["1:solar:x"])


@pytest.mark.integration
def test_sd_notify_ready_watchdog_and_silence_when_a_device_task_hangs(mosquitto: MosquittoBroker,
                                                                        tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    notifier = Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})  # ping every 0.2 s
    hq = HeadquartersSim(mosquitto.host, mosquitto.port, synthetic_registry(100))
    hq.start()
    hq.publish_documents()
    board = RelayBoardSim(channels=1)
    board.start()
    scanner = ScannerSim()
    station = Station(StationConfig(
        station_id="77.777.77", zone="WIB", data_dir=tmp_path / "data", broker_host=mosquitto.host,
        broker_port=mosquitto.port, trusted_keys={hq.key_id: hq.public_key_hex}, relay_board_port=board.path,
        pumps=(PumpConfig(1, "solar", 0, scanner.path),)), on_line=lambda line: None)
    stop = threading.Event()
    runner = threading.Thread(target=serve, args=(station, notifier, stop), daemon=True)
    runner.start()

    def messages(seconds: float) -> list[str]:
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
        return got

    try:
        first = messages(2.0)
        assert first and first[0].startswith("READY=1\nSTATUS=pumps 1:")
        assert sum(m.startswith("WATCHDOG=1") for m in first) >= 3
        # The relay board's I/O task hangs (a driver bug, a blocked write): pings must stop.
        station.board._port._on_idle = lambda: time.sleep(3600)  # type: ignore[attr-defined]
        messages(3.5)  # the task's heartbeat goes stale after 3 s
        later = messages(1.5)
        assert later and not any(m.startswith("WATCHDOG=1") for m in later), later
        assert any("UNHEALTHY stuck: pump controller" in m for m in later)
    finally:
        stop.set()
        runner.join(10)
        sock.close()
        hq.close()
        board.close()
        scanner.close()
    assert not board.relay_closed(0)
