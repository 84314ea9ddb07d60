"""Relay-board firmware update over its UART, the agent against the simulated board whose
firmware runs from its own flash directory: a good update is confirmed; firmware that
does not say hello is replaced by the old one by the board's boot guard; relays never
close during either."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.firmware_update import converge, release_firmware
from hq import software_release as sr
from simulators.flash import seed_flash
from simulators.relay_board import RelayBoardSim
from tests.release_fixtures import firmware_files

pytestmark = pytest.mark.integration
TRIAL_MS = 3000


def release_with_firmware(tmp: Path, version: int, say_hello: bool) -> Path:
    """A staged release directory as agent/releases.py lays it out (files/, manifest.json)."""
    wheel = tmp / "spbu_edge-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    out = tmp / f"release-fw{version}-{say_hello}"
    sr.build(out, "0.2.0", 2, [wheel], firmware=firmware_files(version, say_hello, into=tmp),
             firmware_version=version, now=dt.datetime.now(dt.UTC))
    sr.sign(out, [Ed25519PrivateKey.generate()])
    return out


@pytest.fixture
def board(tmp_path: Path) -> Iterator[RelayBoardSim]:
    flash = tmp_path / "flash"
    seed_flash(flash)
    sim = RelayBoardSim(channels=2, flash=flash, trial_ms=TRIAL_MS)
    sim.start()
    yield sim
    sim.close()


def test_release_firmware_lists_the_flash_files(tmp_path: Path) -> None:
    version, files = release_firmware(release_with_firmware(tmp_path, 2, True))
    assert version == 2
    assert {name for name, _ in files} >= {"hal/firmware/board_core.py", "hal/relay_proto.py"}


def test_good_firmware_is_written_restarted_checked_and_confirmed(board: RelayBoardSim, tmp_path: Path) -> None:
    assert board.firmware_version == 1
    outcome = converge(board.path, 115200, release_with_firmware(tmp_path, 2, True), trial_ms=TRIAL_MS)
    assert outcome.ok, outcome
    assert board.firmware_version == 2 and board.boots == ["normal", "trial"]
    assert board.flash is not None and not (board.flash / "fw_trial").exists()
    assert not list(board.flash.rglob("*.bak")) and not list(board.flash.rglob("*.new"))
    assert not board.relay_ever_closed
    again = converge(board.path, 115200, release_with_firmware(tmp_path, 2, True), trial_ms=TRIAL_MS)
    assert again.ok and "already" in again.detail


def test_firmware_without_hello_is_replaced_by_the_old_one(board: RelayBoardSim, tmp_path: Path) -> None:
    assert board.flash is not None
    before = (board.flash / "hal/firmware/board_core.py").read_bytes()
    outcome = converge(board.path, 115200, release_with_firmware(tmp_path, 3, False), trial_ms=TRIAL_MS)
    assert not outcome.ok
    assert "did not say hello" in outcome.detail and "old firmware 1 is back" in outcome.detail, outcome
    assert board.boots == ["normal", "trial", "normal"]
    assert board.firmware_version == 1
    assert (board.flash / "hal/firmware/board_core.py").read_bytes() == before
    assert not (board.flash / "fw_trial").exists()
    assert not board.relay_ever_closed
