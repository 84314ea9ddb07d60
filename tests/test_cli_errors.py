"""Every mistake a technician can make at the command line is one clear line on stderr and
a non-zero exit, never a traceback: the cases found by hand, and anything unforeseen."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent.cli_agent
from agent.cli import main
from agent.signing import public_key_hex


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

    monkeypatch.setattr(agent.cli_agent, "cmd_status", broken)
    code, err = run(capsys, "agent", "status", "--config", str(tmp_path / "x.toml"))
    assert code == 1 and err.count("\n") == 1 and "KeyError" in err and "-vv" in err, err
    code = main(["-vv", "agent", "status", "--config", str(tmp_path / "x.toml")])
    assert code == 1 and "Traceback" in capsys.readouterr().err


def test_agent_status_without_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    from agent.signing import key_id

    config = tmp_path / "agent.toml"
    config.write_text(f'[station]\nid = "34.401.01"\ndata_dir = "data"\n[mqtt]\nport = 1883\n'
                      f'[trust.keys]\n"{key_id(key)}" = "{public_key_hex(key)}"\n[relay_board]\nport = "/dev/r"\n'
                      '[[pumps]]\nnumber = 1\nproduct = "solar"\nchannel = 0\nscanner = "/dev/s"\n')
    code, err = run(capsys, "agent", "status", "--config", str(config))
    assert code != 0 and "no agent answers" in err and "systemctl status spbu-agent" in err, err


def test_every_option_with_a_default_shows_it_in_help() -> None:
    import argparse

    from agent.cli import build_parser

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
