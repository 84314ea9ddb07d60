"""Relay-board firmware update over its UART, the agent against the simulated board whose
firmware runs from its own flash directory: a good update is confirmed; firmware that
does not say hello is replaced by the old one by the board's boot guard; relays never
close during either."""

from __future__ import annotations

import binascii
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.updates.firmware import converge, release_firmware
from hal import relay_proto as rp
from hal.firmware.boot_guard import OsFs
from hal.firmware.fw_update import FlashUpdate
from hal.fw_update import FirmwareSender
from hq import software_release as sr
from simulators.flash import seed_flash
from simulators.relay_board import RelayBoardSim
from tests.release_fixtures import firmware_files

pytestmark = pytest.mark.integration
TRIAL_MS = 3000


def release_with_firmware(tmp: Path, version: int, say_hello: bool) -> Path:
    """A staged release directory as agent/updates/store.py lays it out (files/, manifest.json)."""
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


FW_STEPS = [rp.FW_BEGIN, rp.FW_OPEN, rp.FW_DATA, rp.FW_CLOSE, rp.FW_COMMIT, rp.FW_CONFIRM, rp.FW_ABORT]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FW_STEPS), st.integers(0, 20), st.integers(0, 70000),
                          st.binary(max_size=30)), max_size=40))
def test_board_update_never_raises_and_never_swaps_unverified_files(tmp_path: Path,
                                                                    steps: list[tuple[int, int, int, bytes]]) -> None:
    """Any sequence of update messages, well-formed or not: the board answers each with a
    result code and the running files change only through a CLOSE whose CRC matched."""
    flash = tmp_path / f"flash-{len(list(tmp_path.iterdir()))}"
    (flash / "hal").mkdir(parents=True)
    (flash / "hal" / "relay_proto.py").write_bytes(b"OLD")
    updater = FlashUpdate(OsFs(os, str(flash) + "/"))
    for mtype, a, b, data in steps:
        if mtype == rp.FW_OPEN:
            values: tuple[int | bytes, ...] = (a, b, b"hal/relay_proto.py" if a % 2 else data[:26])
        elif mtype == rp.FW_DATA:
            values = (a, b & 0xFFFF, len(data[:24]), data[:24].ljust(24, b"\0"))
        elif mtype == rp.FW_CLOSE:
            values = (a, b)
        else:
            values = (b,)
        result = updater.handle(mtype, values)
        if result is None:
            assert mtype == rp.FW_DATA  # blocks are not answered one by one
        else:
            assert result[0] in (0, 1, 2, 3, 4, 5)
    current = (flash / "hal" / "relay_proto.py").read_bytes()
    # Unchanged, unless a whole file with a right CRC-32 went through: vanishingly unlikely
    # from random bytes, so anything else means an unverified swap.
    assert current == b"OLD" or binascii.crc32(current) in {s[2] for s in steps if s[0] == rp.FW_CLOSE}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["poll", "result", "hello"]), st.integers(0, 255), st.integers(0, 255),
                          st.integers(0, 2**32 - 1), st.integers(0, 100)), max_size=60))
def test_host_sender_never_raises_and_ends_only_in_a_known_state(events: list[tuple[str, int, int, int, int]]
                                                                 ) -> None:
    sender = FirmwareSender([("hal/relay_proto.py", b"x" * 100)], 2, 7, 0, old_version=1)
    now = 0
    for kind, a, b, c, step in events:
        now += step * 100
        if kind == "poll":
            sender.poll(now, a % 3)
        elif kind == "result":
            sender.on_result(a, b, c, now)
        else:
            sender.on_hello(a, now)
    assert sender.state in ("sending", "committed", "waiting_restore", "confirming", "done", "restored", "failed")
    assert sender.state != "done" or sender.error == ""
