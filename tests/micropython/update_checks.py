"""The relay-board firmware update, board and host halves over real frames, runnable on
MicroPython and CPython alike: files written with verification, swapped in on commit,
confirmed after the new firmware's hello, or restored by the boot guard; relays open
throughout. Prints "PASS name" / "FAIL name: detail" and "N passed, M failed"."""

import binascii
import os

import machine

from hal import fw_update as host
from hal import relay_proto as rp
from hal.firmware import boot_guard
from hal.firmware.board_core import FIRMWARE_VERSION, BoardCore
from hal.firmware.boot_guard import OsFs
from hal.firmware.fw_update import FlashUpdate

results = [0, 0]
ROOT = "flash_checks/"


def check(name, condition, detail=""):
    if condition:
        results[0] += 1
        print("PASS " + name)
    else:
        results[1] += 1
        print("FAIL " + name + ": " + str(detail))


def fresh_flash():
    for d in ("flash_checks", "flash_checks/hal", "flash_checks/hal/firmware"):
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            os.mkdir(d)
        except OSError:
            pass
    fs = OsFs(os, ROOT)
    for name in ("fw_trial", "hal/relay_proto.py.bak", "hal/firmware/board_core.py.bak",
                 "hal/relay_proto.py.new", "hal/firmware/board_core.py.new"):
        fs.remove(name)
    fs.write("hal/firmware/board_core.py", b"OLD-CORE")
    fs.write("hal/relay_proto.py", b"OLD-PROTO")
    return fs


NEW = [("hal/firmware/board_core.py", b"NEW-CORE " * 40), ("hal/relay_proto.py", b"NEW-PROTO " * 90)]


class Bench:
    """Host link and sender on one side, the board core on the other, bytes between."""

    def __init__(self, fs, version, old_version):
        self.fs = fs
        self.link = rp.Link()
        self.core = BoardCore(2, updater=FlashUpdate(fs))
        self.core.boot(0, 1)
        self.sender = host.FirmwareSender(NEW, version, 42, 0, hello_ms=2000, restore_ms=5000,
                                          old_version=old_version)
        self.now = 0
        self.boots = ["normal"]
        self.mute = False
        self.relay_seen = False

    def reboot(self):
        state = boot_guard.check(self.fs)
        self.boots.append(state)
        if state == "trial":
            boot_guard.arm(machine, self.fs, 1000)
        self.core = BoardCore(2, updater=FlashUpdate(self.fs))
        if self.mute and state == "trial":
            self.core.link = rp.Link()  # the new firmware never says hello
        else:
            self.core.boot(self.now, 100 + len(self.boots))

    def run(self, max_ms=30000, fire_timer_at=-1):
        while not self.sender.finished and self.now < max_ms:
            self.now += 10
            for mtype, values in self.sender.poll(self.now, self.link.in_flight):
                self.link.send(mtype, values, self.now)
            self.link.poll(self.now)
            self.core.feed(self.link.take_output(), self.now)
            self.core.tick(self.now)
            for ch in range(2):
                if self.core.relay(ch):
                    self.relay_seen = True
            for mtype, values in self.link.feed(self.core.take_output(), self.now):
                out = []
                if mtype == rp.FW_RESULT:
                    out = self.sender.on_result(values[0], values[1], values[2], self.now)
                elif mtype == rp.BOARD_HELLO:
                    out = self.sender.on_hello(values[0], self.now)
                for m, v in out:
                    self.link.send(m, v, self.now)
            if self.core.reset_requested():
                self.reboot()
            if fire_timer_at >= 0 and self.now >= fire_timer_at and machine.Timer.armed:
                try:
                    machine.Timer.armed[0].fire()
                except machine.BoardReset:
                    self.reboot()


# --- a good update: written, committed, restarted, hello with the version, confirmed ------
fs = fresh_flash()
bench = Bench(fs, FIRMWARE_VERSION, FIRMWARE_VERSION - 1)
bench.run()
check("update_done", bench.sender.state == host.DONE, bench.sender.state + " " + bench.sender.error)
check("update_files_replaced", fs.read("hal/firmware/board_core.py") == NEW[0][1]
      and fs.read("hal/relay_proto.py") == NEW[1][1])
check("update_trial_then_confirmed", bench.boots == ["normal", "trial"] and not fs.exists("fw_trial")
      and not fs.exists("hal/relay_proto.py.bak"), bench.boots)
check("update_relays_never_closed", not bench.relay_seen)
machine.Timer.armed = []

# --- new firmware without hello: the guard's timer restores the old files ----------------
fs = fresh_flash()
bench = Bench(fs, FIRMWARE_VERSION + 1, FIRMWARE_VERSION)
bench.mute = True
bench.run(fire_timer_at=4000)
check("mute_restored", bench.sender.state == host.RESTORED, bench.sender.state + " " + bench.sender.error)
check("mute_reason_named", "did not say hello" in bench.sender.error, bench.sender.error)
check("mute_old_files_back", fs.read("hal/firmware/board_core.py") == b"OLD-CORE"
      and fs.read("hal/relay_proto.py") == b"OLD-PROTO" and not fs.exists("fw_trial"))
check("mute_boots", bench.boots == ["normal", "trial", "normal"], bench.boots)
check("mute_relays_never_closed", not bench.relay_seen)
machine.Timer.armed = []

# --- a power cut in the middle of the commit's renames: restored at the next boot --------
fs = fresh_flash()
fs.write("hal/firmware/board_core.py.new", b"NEW")
fs.write("hal/relay_proto.py.new", b"NEW")
boot_guard.begin_trial(fs, ["hal/firmware/board_core.py", "hal/relay_proto.py"])
fs.rename("hal/firmware/board_core.py", "hal/firmware/board_core.py.bak")
fs.rename("hal/firmware/board_core.py.new", "hal/firmware/board_core.py")
check("torn_commit_restored", boot_guard.check(fs) == "restored")
check("torn_commit_old_files", fs.read("hal/firmware/board_core.py") == b"OLD-CORE"
      and fs.read("hal/relay_proto.py") == b"OLD-PROTO" and not fs.exists("hal/relay_proto.py.new"))

# --- a trial that booted once without CONFIRM (crash, watchdog reset) is restored ---------
fs = fresh_flash()
bench = Bench(fs, FIRMWARE_VERSION, FIRMWARE_VERSION - 1)
bench.sender.hello_ms = 0
up = FlashUpdate(fs)
up.handle(rp.FW_BEGIN, (1,))
for i, (name, data) in enumerate(NEW):
    up.handle(rp.FW_OPEN, (i, len(data), name.encode()))
    for b in range(0, len(data), rp.FW_BLOCK):
        up.handle(rp.FW_DATA, (i, b // rp.FW_BLOCK, len(data[b:b + 24]), data[b:b + 24]))
    up.handle(rp.FW_CLOSE, (i, binascii.crc32(data) & 0xFFFFFFFF))
check("commit_ok", up.handle(rp.FW_COMMIT, (1,))[0] == rp.FW_OK and up.reset_requested)
check("second_unconfirmed_boot_restores", boot_guard.check(fs) == "trial" and boot_guard.check(fs) == "restored"
      and fs.read("hal/relay_proto.py") == b"OLD-PROTO")
machine.Timer.armed = []

# --- the board's own checks ---------------------------------------------------------------
fs = fresh_flash()
up = FlashUpdate(fs)
check("refused_before_begin", up.handle(rp.FW_OPEN, (0, 4, b"hal/x.py"))[0] == rp.FW_ERR_STATE)
up.handle(rp.FW_BEGIN, (2,))
check("guard_is_protected", up.handle(rp.FW_OPEN, (0, 4, b"hal/firmware/boot_guard.py"))[0] == rp.FW_ERR_NAME)
check("no_parent_paths", up.handle(rp.FW_OPEN, (0, 4, b"../main.py"))[0] == rp.FW_ERR_NAME)
up.handle(rp.FW_OPEN, (0, 5, b"hal/relay_proto.py"))
up.handle(rp.FW_DATA, (0, 0, 5, b"XXXXX"))
check("bad_crc_refused", up.handle(rp.FW_CLOSE, (0, 12345))[0] == rp.FW_ERR_CRC
      and not fs.exists("hal/relay_proto.py.new"))
check("commit_refused_with_open_file", up.handle(rp.FW_COMMIT, (2,))[0] == rp.FW_ERR_STATE
      and fs.read("hal/relay_proto.py") == b"OLD-PROTO")
core = BoardCore(1, updater=FlashUpdate(fs))
core.boot(0, 5)
core.feed(rp.encode_frame(0, rp.HEARTBEAT, b""), 10)
core.feed(rp.encode_frame(1, rp.FW_BEGIN, rp.encode_payload(rp.FW_BEGIN, (3,))), 20)
core.feed(rp.encode_frame(2, rp.AUTHORIZE, rp.encode_payload(rp.AUTHORIZE, (0, 7, 100))), 30)
check("no_authorize_while_updating", not core.relay(0))

print("%d passed, %d failed" % (results[0], results[1]))
