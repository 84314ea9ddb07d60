"""`spbu release ...` for headquarters, and a release carried on a USB stick to a station:
the same checks as over the broker (a tampered file is refused), the files land as chunks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.cli.main import main
from agent.trust.root import TrustStore
from agent.trust.signing import save_private_key
from agent.update_config import UpdateConfig
from agent.updates.switch import Switch
from agent.updates.updater import ReleaseFetch, UpdateEvent
from simulators.broker import MosquittoBroker
from tests.allowlist_fixtures import Headquarters
from tests.helpers import MqttRecorder, wait_until


def _wheel(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"spbu_edge-{version}-py3-none-any.whl"
    path.write_bytes(b"not really a wheel " * 300)
    return path


def test_build_sign_publish_status_halt_and_usb(mosquitto: MosquittoBroker, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _wheel(tmp_path / "wheels", "0.2.0")
    key = Ed25519PrivateKey.generate()
    save_private_key(key, tmp_path / "software.key")
    out = tmp_path / "rel"
    broker = ["--host", mosquitto.host, "--port", str(mosquitto.port)]
    assert main(["release", "build", "--out", str(out), "--version", "0.2.0", "--sequence", "2",
                 "--wheels", str(tmp_path / "wheels"), "--firmware", "hal", "--firmware-version", "2"]) == 0
    assert main(["release", "sign", "--out", str(out), "--key", str(tmp_path / "software.key")]) == 0
    seen = MqttRecorder(mosquitto, [topics.SOFTWARE_MANIFEST], "test-release-cli")
    try:
        assert main(["release", "publish", "--out", str(out), *broker]) == 0
        assert wait_until(lambda: bool(seen.received()), 5)
        signed = seen.received()[-1][1]["signed"]
        assert signed["version"] == "0.2.0" and signed["rollout"]["percent"] == 1
        assert any(f["path"] == "firmware/hal/firmware/board_core.py" for f in signed["files"])
        fleet = tmp_path / "fleet.txt"
        fleet.write_text("34.401.01\n34.401.02\n")
        capsys.readouterr()
        assert main(["release", "status", "--out", str(out), "--fleet", str(fleet), "--wait", "0.5", *broker]) == 0
        assert json.loads(capsys.readouterr().out)["version"] == "0.2.0"
        assert main(["release", "halt", "--out", str(out), "--key", str(tmp_path / "software.key"), *broker]) == 0
        assert wait_until(lambda: seen.received()[-1][1]["signed"]["rollout"]["halted"] is True, 5)
    finally:
        seen.close()
        cleanup = MqttRecorder(mosquitto, [], "test-release-cli-cleanup")
        cleanup.client.publish(topics.SOFTWARE_MANIFEST, b"", qos=1, retain=True).wait_for_publish(5)
        cleanup.close()
    assert main(["release", "usb", "--out", str(out), "--stick", str(tmp_path / "stick")]) == 0
    assert (tmp_path / "stick" / "manifest.json").exists()
    assert (tmp_path / "stick" / "files" / "wheels" / "spbu_edge-0.2.0-py3-none-any.whl").exists()


def test_release_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["release", "build", "--out", str(tmp_path / "r"), "--version", "0.2.0", "--sequence", "2",
                 "--wheels", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "no wheels" in err and len(err.strip().splitlines()) == 1
    _wheel(tmp_path / "w", "0.3.0")
    code = main(["release", "build", "--out", str(tmp_path / "r"), "--version", "0.2.0", "--sequence", "2",
                 "--wheels", str(tmp_path / "w")])
    assert code != 0 and "spbu_edge-0.2.0" in capsys.readouterr().err


def _fetch_for(tmp_path: Path, hq: Headquarters, stick: Path, events: list[UpdateEvent]) -> ReleaseFetch:
    trust = TrustStore.from_root_file(hq.root_file(), tmp_path / "trust.json")
    cfg = UpdateConfig(tmp_path / "releases", tmp_path / "update", usb_dir=stick)
    return ReleaseFetch(cfg, "34.401.01", "127.0.0.1", 1, trust, events.append,
                        Switch(cfg.releases, cfg.state))


def test_a_usb_stick_is_checked_like_the_broker(tmp_path: Path) -> None:
    from hq import software_release as sr

    hq = Headquarters(tmp_path / "hq")
    out = tmp_path / "rel"
    sr.build(out, "0.2.0", 2, [_wheel(tmp_path / "w", "0.2.0")], percent=100, chunk_size=1024)
    sr.sign(out, hq.role_keys["software"])
    stick = tmp_path / "stick"
    sr.export_usb(out, stick)
    wheel_on_stick = stick / "files" / "wheels" / "spbu_edge-0.2.0-py3-none-any.whl"
    good = wheel_on_stick.read_bytes()
    wheel_on_stick.write_bytes(good[:100] + b"X" + good[101:])
    events: list[UpdateEvent] = []
    fetch = _fetch_for(tmp_path, hq, stick, events)
    fetch._look_at_usb(stick)
    assert [e.check for e in events if e.kind == "rejected"] == ["chunk digest mismatch"]
    assert fetch.staged is None
    # A good stick: every chunk verified onto disk, then staging (this fake wheel fails it).
    wheel_on_stick.write_bytes(good)
    (stick / "manifest.json").write_bytes(sr.sign(out, hq.role_keys["software"]) + b" ")
    events.clear()
    fetch._look_at_usb(stick)
    rejected = [e for e in events if e.kind == "rejected"]
    assert rejected and rejected[0].check == "staging failed" and "venv" in rejected[0].detail, events
    assert not (tmp_path / "releases" / "0.2.0").exists(), "nothing half-made is left"


def test_an_impostor_manifest_on_a_stick_is_refused(tmp_path: Path) -> None:
    from hq import software_release as sr

    hq = Headquarters(tmp_path / "hq")
    out = tmp_path / "rel"
    sr.build(out, "0.2.0", 2, [_wheel(tmp_path / "w", "0.2.0")], percent=100, now=dt.datetime.now(dt.UTC))
    sr.sign(out, hq.role_keys["tokens"])
    sr.export_usb(out, tmp_path / "stick")
    events: list[UpdateEvent] = []
    _fetch_for(tmp_path, hq, tmp_path / "stick", events)._look_at_usb(tmp_path / "stick")
    assert [e.check for e in events] == ["unknown key"]
