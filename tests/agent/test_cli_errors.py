"""Every mistake a technician can make at the command line is one clear line on stderr and
a non-zero exit, never a traceback: the cases found by hand, and anything unforeseen."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent.cli.service
from agent.cli.main import main
from agent.trust.signing import public_key_hex


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.err


def test_token_issue_with_a_public_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub = tmp_path / "hq.pub"
    pub.write_text(public_key_hex(Ed25519PrivateKey.generate().public_key()) + "\n")
    code, err = run(capsys, "token", "issue", "--vehicle-id", "7", "--plate", "B 1 AA", "--key", str(pub))
    assert code != 0 and "not a PEM private key" in err and len(err.strip().splitlines()) == 1, err


def test_allowlist_inspect_of_a_malformed_envelope(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "manifest.json"
    for text in ('{"signed": 5}', '{"signed": {"snapshot": 3}}', "[1]", "not json"):
        bad.write_text(text)
        code, err = run(capsys, "allowlist", "inspect", str(bad))
        assert code != 0 and "neither a store, a delta nor a signed manifest" in err, (text, err)


@pytest.mark.parametrize("vehicle", ["-1", str(1 << 64), "abc"])
def test_allowlist_lookup_of_an_invalid_id(tmp_path: Path, capsys: pytest.CaptureFixture[str], vehicle: str) -> None:
    code, err = run(capsys, "allowlist", "lookup", "--store", str(tmp_path / "store.bin"), vehicle)
    assert code != 0 and "invalid vehicle id" in err, err


def test_an_unforeseen_error_is_one_line_and_vv_shows_the_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise KeyError("surprise")

    monkeypatch.setattr(agent.cli.service, "cmd_status", broken)
    code, err = run(capsys, "agent", "status", "--config", str(tmp_path / "x.toml"))
    assert code == 1 and err.count("\n") == 1 and "KeyError" in err and "-vv" in err, err
    code = main(["-vv", "agent", "status", "--config", str(tmp_path / "x.toml")])
    assert code == 1 and "Traceback" in capsys.readouterr().err


def test_agent_status_without_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    from agent.trust.signing import key_id

    config = tmp_path / "agent.toml"
    config.write_text(f'[station]\nid = "34.401.01"\ndata_dir = "data"\n[mqtt]\nport = 1883\n'
                      f'[trust.keys]\n"{key_id(key)}" = "{public_key_hex(key)}"\n[relay_board]\nport = "/dev/r"\n'
                      '[[pumps]]\nnumber = 1\nproduct = "solar"\nchannel = 0\nscanner = "/dev/s"\n')
    code, err = run(capsys, "agent", "status", "--config", str(config))
    assert code != 0 and "no agent answers" in err and "systemctl status spbu-agent" in err, err


def test_every_option_with_a_default_shows_it_in_help() -> None:
    import argparse

    from agent.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    missing += walk(sub, f"{path} {name}")
            elif (action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
                  and action.help != argparse.SUPPRESS and "default" not in (action.help or "")):
                missing.append(f"{path} {action.option_strings[0]}")
        return missing

    assert walk(build_parser(), "spbu") == []


def test_one_name_per_idea_with_the_old_spellings_for_one_release(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.main import build_parser

    parser = build_parser()
    new = parser.parse_args(["demo", "--controller", "dart", "--pumps", "3"])
    assert (new.controller, new.pumps) == ("dart", 3)
    assert capsys.readouterr().err == ""
    old = parser.parse_args(["demo", "--pump", "dart"])
    assert old.controller == "dart" and "--pump is now --controller" in capsys.readouterr().err
    prov = parser.parse_args(["provision", "--station", "34.401.01", "--trust", "x", "--kind", "uart",
                              "--board", "/dev/x"])
    assert (prov.controller, prov.port) == ("relay", "/dev/x")
    assert "--kind is now --controller" in capsys.readouterr().err
    hw = parser.parse_args(["hw", "test", "--port", "/dev/x", "--dart"])
    assert hw.controller == "dart" and "--dart is now --controller dart" in capsys.readouterr().err
    assert parser.parse_args(["hw", "test", "--port", "/dev/x", "--controller", "dart"]).controller == "dart"
    # the old spellings are not advertised
    for path in (["demo"], ["provision"], ["hw", "test"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*path, "--help"])
        text = capsys.readouterr().out
        assert "--controller" in text and not any(f"{old} " in text for old in ("--kind", "--board", "--dart"))
    # the same spelling for the config everywhere
    for path in (["agent", "run"], ["agent", "check-config"], ["agent", "status"]):
        assert parser.parse_args([*path, "--config", "/x.toml"]).config == Path("/x.toml")


def test_relay_is_a_pump_controller_kind_in_the_config_too() -> None:
    from agent.config import parse_config

    key = Ed25519PrivateKey.generate().public_key()
    from agent.trust.signing import key_id

    data = {"station": {"id": "34.401.01", "data_dir": "/var/lib/spbu"}, "mqtt": {"port": 1883},
            "trust": {"keys": {key_id(key): public_key_hex(key)}}, "relay_board": {"kind": "relay", "port": "/dev/r"},
            "pumps": [{"number": 1, "product": "solar", "channel": 0, "scanner": "/dev/s"}]}
    assert parse_config(data, Path("/etc/spbu")).relay_board_kind == "uart"
