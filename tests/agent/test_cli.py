"""The `spbu` command line: every command has --help; errors are one line on stderr."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli.main import build_parser, main
from agent.qr.tokens import verify_token
from agent.trust.signing import load_public_key_hex

ROOT = Path(__file__).resolve().parents[2]
SPBU = [sys.executable, "-m", "agent"]


def all_command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += all_command_paths(sub, (*prefix, name))
    return paths


@pytest.mark.parametrize("path", all_command_paths(build_parser()), ids=lambda p: " ".join(p) or "spbu")
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    assert "usage: spbu" in capsys.readouterr().out


def test_contract_commands_exist() -> None:
    names = {p[0] for p in all_command_paths(build_parser()) if p}
    assert {"demo", "agent", "keys", "token", "sim"} <= names


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPBU, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_python_m_agent_is_the_same_entry_point() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("spbu-edge ")


@pytest.mark.parametrize("content", [None, "not [valid toml", "[station]\nid = 'X'\n"])
def test_bad_config_is_one_clear_line(tmp_path: Path, content: str | None) -> None:
    config = tmp_path / "station.toml"
    if content is not None:
        config.write_text(content)
    result = run("agent", "run", "--config", str(config))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spbu: error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_keys_generate_and_token_issue(tmp_path: Path) -> None:
    result = run("keys", "generate", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hq-signing.key").stat().st_mode & 0o777 == 0o600
    assert len((tmp_path / "hq-signing.pub").read_text().strip()) == 64
    again = run("keys", "generate", "--out", str(tmp_path))
    assert again.returncode == 2 and "exists" in again.stderr
    key = str(tmp_path / "hq-signing.key")
    token = run("token", "issue", "--vehicle-id", "18446744073709551615", "--plate", "b 1234 xyz", "--key", key,
                "--date", "2026-11-23")
    assert token.returncode == 0, token.stderr
    public = load_public_key_hex((tmp_path / "hq-signing.pub").read_text().strip())
    from agent.trust.signing import key_id
    verified = verify_token(token.stdout.strip(), {key_id(public): public})
    assert (verified.vehicle_id, verified.plate, str(verified.issued)) == (2**64 - 1, "B 1234 XYZ", "2026-11-23")
    bad = run("token", "issue", "--vehicle-id", "0", "--plate", "B 1", "--key", key)
    assert bad.returncode == 2 and bad.stderr.startswith("spbu: error:")


def mosquitto_pids(parent: int | None = None) -> set[int]:
    """Live mosquitto processes (of one parent): other test runs on the machine may start
    brokers of their own meanwhile, so a test follows the pids of its own demo."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                alive = fields[0] != "Z"
                mine = parent is None or int(fields[1]) == parent
                if alive and mine and b"mosquitto" in (entry / "cmdline").read_bytes().split(b"\0")[0]:
                    pids.add(int(entry.name))
            except (OSError, IndexError):
                continue
    return pids


@pytest.mark.integration
@pytest.mark.slow
def test_demo_exits_zero_with_reconciled_json(tmp_path: Path) -> None:
    import json

    out = tmp_path / "summary.json"
    result = run("demo", "--customers", "12", "--json", str(out), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())
    assert summary["ok"] is True
    for row in summary["pumps"].values():
        assert row["totaliser_ml"] == row["journal_ml"] == row["hq_ml"] > 0
    reasons = {c["reason"] for c in summary["customers"]}
    assert {"quota_exhausted", "unknown_qr", "wrong_product"} <= reasons
    assert "BOLEH ISI" in result.stdout and "DITOLAK" in result.stdout
    # card payments: postpay, prepay refunded in part, declined then cash; the terminal's
    # ledger holds nothing the fuel does not match
    assert summary["unmatched_approvals"] == 0
    payments = {c["label"]: c["payment"] for c in summary["customers"] if c["payment"]}
    assert payments == {"card postpay": "card/paid", "card prepay, partial fill, refund": "card/paid",
                        "card declined, paid cash": "cash/declined"}
    assert "unmatched approvals): 0" in result.stdout
    # national quota: the same vehicle refused at a second station, with the reason
    assert summary["national"]["ok"] and summary["national"]["second_station"] == "quota_used_elsewhere"
    assert "hari ini di SPBU lain" in result.stdout


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_stopping_the_demo_leaves_no_broker_behind(how: signal.Signals) -> None:
    """Ctrl-C and SIGTERM unwind through clean-up; even SIGKILL takes the broker down with
    it (parent-death signal). Simulators are threads of the demo process."""
    proc = subprocess.Popen([*SPBU, "demo", "--customers", "40"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            # as a shell's background job: SIGINT ignored on entry
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "BOLEH ISI" in line:
                break
        else:
            pytest.fail("the demo never authorised a pump")
        ours = mosquitto_pids(parent=proc.pid)
        assert ours, "the demo's broker should be running"
        proc.send_signal(how)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    deadline = time.monotonic() + 5
    while ours & mosquitto_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (ours & mosquitto_pids()), "a mosquitto outlived the demo"
