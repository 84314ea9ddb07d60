"""`spbu agent check-config` says no to what would break or mislead a station: a typo'd
key or section, a channel the controller cannot have, a data_dir that is a file, the
example's public key, a device that is not there, an optional scanner kind whose extra is
not installed; and yes (exit 0) to a good config on a machine that has its devices."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli.main import main
from agent.trust.signing import key_id, public_key_hex
from hal import scanner_select

ROOT = Path(__file__).resolve().parents[2]


def good_config(tmp_path: Path) -> str:
    key = Ed25519PrivateKey.generate().public_key()
    for name in ("relay", "scanner"):
        (tmp_path / name).touch()
    return f"""
[station]
id = "34.401.01"
data_dir = "{tmp_path / 'data'}"

[mqtt]
port = 1883

[trust.keys]
"{key_id(key)}" = "{public_key_hex(key)}"

[relay_board]
port = "{tmp_path / 'relay'}"
baud = 115200

[[pumps]]
number = 1
product = "solar"
channel = 0
scanner = "{tmp_path / 'scanner'}"
"""


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    code = main(["agent", "check-config", "--config", str(path), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_good_config_on_a_machine_with_its_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, good_config(tmp_path), capsys)
    assert code == 0 and out.rstrip().endswith("OK"), out
    # the older spelling, the file as the argument, still works
    assert main(["agent", "check-config", str(tmp_path / "agent.toml")]) == 0


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("baud = 115200", "buad = 115200"), "unknown setting 'buad' (did you mean 'baud'?)"),
    (lambda t: t + "\n[sacnners]\nbaud = 9600\n", "unknown section [sacnners] (did you mean [scanners]?)"),
    (lambda t: t.replace("channel = 0", "channel = 99"), "channel must be 0..15"),
    (lambda t: re.sub(r'data_dir = ".*"', 'data_dir = "/etc/passwd"', t), "must be a directory of its own"),
    (lambda t: re.sub(r'data_dir = ".*"', 'data_dir = "/etc"', t), "must be a directory of its own"),
])
def test_config_mistakes_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object,
                                            message: str) -> None:
    code, out = check(tmp_path, edit(good_config(tmp_path)), capsys)  # type: ignore[operator]
    assert code == 2 and message in out and "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1


def test_example_key_missing_device_and_missing_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    example = (ROOT / "deploy" / "agent.example.toml").read_text()
    code, out = check(tmp_path, example.replace('"/var/lib/spbu"', f'"{tmp_path / "data"}"'), capsys)
    assert code == 1 and "example config's public key" in out and "/dev/spbu-scanner-1 missing" in out, out

    text = good_config(tmp_path)
    (tmp_path / "scanner").unlink()
    code, out = check(tmp_path, text, capsys)
    assert code == 1 and "[FAIL] scanner pump 1" in out and "NOT OK" in out, out
    # the service's start check reports it but lets the agent start (it warns by itself)
    code, out = check(tmp_path, text, capsys, "--skip-devices")
    assert code == 0 and "[warn] scanner pump 1" in out, out

    # a keyboard-mode scanner on a Pi without the [hid] extra
    real = importlib.util.find_spec
    monkeypatch.setattr("hal.scanner_select.importlib.util.find_spec",
                        lambda name, *a: None if name == "evdev" else real(name, *a))
    code, out = check(tmp_path, text.replace(f'scanner = "{tmp_path / "scanner"}"', 'scanner = "hid:/dev/input/x"'),
                      capsys)
    assert code == 1 and "install the [hid] extra" in out and "spbu-edge[hid]" in out, out


def test_data_dir_the_service_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: this check needs a non-root user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out = check(tmp_path, re.sub(r'data_dir = ".*"', f'data_dir = "{locked / "data"}"', good_config(tmp_path)),
                      capsys)
    assert code == 1 and "not writable" in out, out


def test_agent_starts_without_a_scanner_whose_extra_is_missing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.config import load_config
    from agent.station import Station

    real = importlib.util.find_spec
    monkeypatch.setattr("hal.scanner_select.importlib.util.find_spec",
                        lambda name, *a: None if name == "cv2" else real(name, *a))
    path = tmp_path / "agent.toml"
    camera = good_config(tmp_path).replace(f'scanner = "{tmp_path / "scanner"}"', 'scanner = "camera:/dev/video0"')
    path.write_text(camera)
    station = Station(load_config(path), on_line=lambda line: None)
    station.start()
    try:
        absent = station.scanners[0]
        assert isinstance(absent, scanner_select.AbsentScanner) and "[camera] extra" in absent.reason
        assert station.health()[0]  # not a stuck task: the watchdog keeps going
    finally:
        station.close()
