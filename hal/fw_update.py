"""Host side of the relay-board firmware update: a sans-IO state machine over the relay
link's FW_* messages (hal/relay_proto.py; the board side is hal/firmware/fw_update.py).

    BEGIN -> (OPEN, DATA..., wait until all acknowledged, CLOSE) per file -> COMMIT
    -> the board restarts -> its hello must name the new firmware version -> CONFIRM.

A hello with another version after COMMIT, or none within `hello_ms`, means the new
firmware is not good: the board's boot guard (hal/firmware/boot_guard.py) puts the old
files back when its trial timer runs out, and the old firmware's hello (`old_version`)
ends the update as "restored". Messages out through `poll`; results and hellos in through `on_result` and
`on_hello`; `in_flight` is the link's count of unacknowledged messages. Times are integer
milliseconds from the caller. MicroPython-compatible subset (no I/O, no clock).
"""

import binascii

from hal import relay_proto as rp

SENDING = "sending"
COMMITTED = "committed"
CONFIRMING = "confirming"
DONE = "done"
RESTORED = "restored"
FAILED = "failed"


class FirmwareSender:
    def __init__(self, files: list, version: int, session: int, now: int,  # type: ignore[type-arg]
                 step_ms: int = 5000, hello_ms: int = 8000, restore_ms: int = 40000, old_version: int = -1) -> None:
        self.files = files  # [(flash path, bytes)]
        self.version = version
        self.old_version = old_version  # what the board ran before: its hello after COMMIT = restored
        self.session = session & 0xFFFFFFFF
        self.step_ms = step_ms
        self.hello_ms = hello_ms
        self.restore_ms = restore_ms
        self.state = SENDING
        self.error = ""
        self._queue: list = [(rp.FW_BEGIN, (self.session,), True)]  # type: ignore[type-arg]  # (type, values, wait)
        for index in range(len(files)):
            self._queue += self._file_messages(index)
        self._queue.append((rp.FW_COMMIT, (self.session,), True))
        self._waiting_for = -1  # FW type whose result we wait for
        self._deadline = now + step_ms

    def _file_messages(self, index: int) -> list:  # type: ignore[type-arg]
        name, data = self.files[index]
        raw = name.encode()
        if len(raw) > rp.FW_NAME:
            raise ValueError("flash path too long: %s" % name)
        out: list = [(rp.FW_OPEN, (index, len(data), raw), True)]  # type: ignore[type-arg]
        for block in range(0, len(data), rp.FW_BLOCK):
            chunk = data[block:block + rp.FW_BLOCK]
            out.append((rp.FW_DATA, (index, block // rp.FW_BLOCK, len(chunk), chunk), False))
        out.append((rp.FW_CLOSE, (index, binascii.crc32(data) & 0xFFFFFFFF), True))
        return out

    @property
    def finished(self) -> bool:
        return self.state in (DONE, RESTORED, FAILED)

    def _fail(self, why: str, state: str = FAILED) -> None:
        self.state = state
        self.error = why

    def poll(self, now: int, in_flight: int) -> list:  # type: ignore[type-arg]
        """Messages to send now, as (type, values)."""
        if self.finished:
            return []
        if now >= self._deadline:
            self._timeout()
            return [(rp.FW_ABORT, (self.session,))] if self.state == FAILED else []
        out: list = []  # type: ignore[type-arg]
        while self.state == SENDING and self._waiting_for < 0 and self._queue:
            mtype, values, wait = self._queue[0]
            if mtype == rp.FW_CLOSE and in_flight > 0:
                break  # every block acknowledged before the board checks the file
            self._queue.pop(0)
            out.append((mtype, values))
            if wait:
                self._waiting_for = mtype
                self._deadline = now + self.step_ms
            if len(out) >= 16:
                break  # the link's window paces the rest
        return out

    def _timeout(self) -> None:
        if self.state == SENDING:
            self._fail("the board did not answer step 0x%02x" % self._waiting_for)
        elif self.state == COMMITTED:
            self._fail("the new firmware did not say hello", COMMITTED)
            self.state = "waiting_restore"
            self._deadline += self.restore_ms
        elif self.state == "waiting_restore":
            self._fail("the board is silent: neither the new nor the old firmware said hello")
        elif self.state == CONFIRMING:
            self._fail("the new firmware did not confirm")

    def on_result(self, mtype: int, code: int, detail: int, now: int) -> list:  # type: ignore[type-arg]
        if mtype != self._waiting_for:
            return []
        self._waiting_for = -1
        if code != rp.FW_OK:
            self._fail("step 0x%02x refused by the board: code %d (%d)" % (mtype, code, detail))
            return [(rp.FW_ABORT, (self.session,))]
        if mtype == rp.FW_COMMIT:
            self.state = COMMITTED
            self._deadline = now + self.hello_ms
        elif mtype == rp.FW_CONFIRM:
            self.state = DONE
        else:
            self._deadline = now + self.step_ms
        return []

    def on_hello(self, firmware: int, now: int) -> list:  # type: ignore[type-arg]
        if self.state == COMMITTED and firmware == self.version:
            self.state = CONFIRMING
            self._waiting_for = rp.FW_CONFIRM
            self._deadline = now + self.step_ms
            return [(rp.FW_CONFIRM, (self.session,))]
        if self.state in (COMMITTED, "waiting_restore") and firmware == self.old_version:
            why = self.error or "the board came back with firmware %d, not %d" % (firmware, self.version)
            self._fail(why + "; the old firmware %d is back" % firmware, RESTORED)
        elif self.state == COMMITTED:
            # The new files run but misname themselves: no CONFIRM, so the boot guard's
            # timer puts the old ones back; wait for the old firmware's hello.
            self.error = "the new firmware said version %d, not %d" % (firmware, self.version)
            self.state = "waiting_restore"
            self._deadline = now + self.restore_ms
        return []
