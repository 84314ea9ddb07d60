"""The relay board's boot guard: runs first at every boot (the board's main.py,
hal/firmware/pico_main.py), never updated over the air, so a bad firmware update always
comes back to the firmware before it.

A committed update leaves the marker file `fw_trial`: a boot count, then the updated
flash paths, one a line. At boot:
  - no marker: normal boot;
  - a path still has its `.new` file (power cut in the middle of the commit's renames),
    or the count is already 1 (the new firmware booted once and was never confirmed: it
    crashed, hung until the hardware watchdog reset the chip, or the host did not hear its
    hello): restore every `.bak`, delete the new files, delete the marker;
  - otherwise: count 1, and `arm` starts a one-shot timer: unless the host confirms within
    TRIAL_MS, the old files come back and the chip resets.
Relays are off at every boot (main.py drives them low before anything else).

MicroPython-compatible subset; file access through `fs` (OsFs).
"""

class OsFs:
    """The board's own flash filesystem (MicroPython `os`); on CPython a directory (`root`)."""

    def __init__(self, os_module, root: str = "") -> None:  # type: ignore[no-untyped-def]
        self.os = os_module
        self.root = root

    def _p(self, name: str) -> str:
        return self.root + name

    def exists(self, name: str) -> bool:
        try:
            self.os.stat(self._p(name))
            return True
        except OSError:
            return False

    def read(self, name: str) -> bytes:
        with open(self._p(name), "rb") as handle:
            data: bytes = handle.read()
            return data

    def write(self, name: str, data: bytes) -> None:
        with open(self._p(name), "wb") as handle:
            handle.write(data)

    def rename(self, old: str, new: str) -> None:
        if self.exists(new):
            self.os.remove(self._p(new))
        self.os.rename(self._p(old), self._p(new))

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.os.remove(self._p(name))


MARKER = "fw_trial"
TRIAL_MS = 20000


def begin_trial(fs: OsFs, names: list) -> None:  # type: ignore[type-arg]
    fs.write(MARKER, ("0\n" + "\n".join(names) + "\n").encode())


def _read(fs: OsFs) -> tuple:  # type: ignore[type-arg]
    lines = fs.read(MARKER).decode().split("\n")
    try:
        count = int(lines[0])
    except ValueError:
        count = 1  # a torn marker: treat the trial as failed
    return count, [n for n in lines[1:] if n]


def restore(fs: OsFs) -> bool:
    """Put back what the last update replaced. Idempotent: a power cut here is repeated."""
    if not fs.exists(MARKER):
        return False
    for name in _read(fs)[1]:
        if fs.exists(name + ".bak"):
            fs.rename(name + ".bak", name)
        elif not fs.exists(name + ".new"):
            fs.remove(name)  # a file the update added
        fs.remove(name + ".new")
    fs.remove(MARKER)
    return True


def confirm(fs: OsFs) -> bool:
    if not fs.exists(MARKER):
        return False
    for name in _read(fs)[1]:
        fs.remove(name + ".bak")
    fs.remove(MARKER)
    return True


def check(fs: OsFs) -> str:
    """'normal', 'trial' or 'restored'."""
    if not fs.exists(MARKER):
        return "normal"
    count, names = _read(fs)
    torn = False
    for name in names:
        if fs.exists(name + ".new"):
            torn = True
    if torn or count >= 1:
        restore(fs)
        return "restored"
    fs.write(MARKER, ("1\n" + "\n".join(names) + "\n").encode())
    return "trial"


def arm(machine, fs, trial_ms=TRIAL_MS):  # type: ignore[no-untyped-def]
    """On a trial boot: the deadline for the host's confirmation, kept by a hardware timer
    so that the new firmware's own loop cannot skip it."""

    def expire(timer):  # type: ignore[no-untyped-def]
        if fs.exists(MARKER):
            restore(fs)
            machine.reset()

    timer = machine.Timer(-1)
    timer.init(mode=machine.Timer.ONE_SHOT, period=trial_ms, callback=expire)
    return timer


def boot(machine, fs, trial_ms=TRIAL_MS):  # type: ignore[no-untyped-def]
    state = check(fs)
    if state == "trial":
        arm(machine, fs, trial_ms)  # type: ignore[no-untyped-call]
    return state
