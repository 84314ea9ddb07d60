"""Board side of the firmware update over the UART: files written with verification,
swapped in on commit (the old ones kept as .bak), confirmed or restored by the boot guard.

Messages (hal/relay_proto.py FW_*): BEGIN puts the board in update mode (every relay
opened, no AUTHORIZE taken until the board restarts or the update is aborted); OPEN
announces a file (flash path, size), DATA carries 24-byte blocks in any order, CLOSE
checks that every block came and the CRC-32 of the whole file, then writes `<path>.new`;
COMMIT writes the trial marker (hal/firmware/boot_guard.py) naming the files, moves each
old file to `<path>.bak` and `<path>.new` into place, and asks for a restart. After the
restart the host checks the new firmware's hello and version and sends CONFIRM, which
deletes the marker and the backups; without it the boot guard restores the old files.

MicroPython-compatible subset: struct, binascii; file access through `fs` (OsFs on the
board, a directory in the simulator).
"""

import binascii

from hal import relay_proto as rp
from hal.firmware import boot_guard
from hal.firmware.boot_guard import OsFs

MAX_FILE = 32768
MAX_FILES = 16
PROTECTED = ("boot.py", "main.py", "hal/firmware/boot_guard.py")  # the entry point and guard are never replaced


def valid_name(name: str) -> bool:
    if not name or name.startswith("/") or ".." in name or name in PROTECTED:
        return False
    for ch in name:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "_./-"):
            return False
    return name.endswith(".py")


class FlashUpdate:
    def __init__(self, fs: OsFs) -> None:
        self.fs = fs
        self.active = False
        self.reset_requested = False
        self.files: dict = {}  # type: ignore[type-arg]  # index -> [name, size, buf, got, closed, missing]

    def handle(self, mtype: int, values: tuple) -> tuple | None:  # type: ignore[type-arg]
        """A FW_* request; returns (code, detail) for FW_RESULT, or None (DATA)."""
        if mtype == rp.FW_BEGIN:
            self._drop_staged()
            self.active = True
            return (rp.FW_OK, 0)
        if mtype == rp.FW_ABORT:
            self._drop_staged()
            self.active = False
            return (rp.FW_OK, 0)
        if mtype == rp.FW_CONFIRM:
            return self._confirm()
        if not self.active:
            return (rp.FW_ERR_STATE, mtype)
        if mtype == rp.FW_OPEN:
            return self._open(values[0], values[1], values[2])
        if mtype == rp.FW_DATA:
            self._data(values[0], values[1], values[2], values[3])
            return None
        if mtype == rp.FW_CLOSE:
            return self._close(values[0], values[1])
        if mtype == rp.FW_COMMIT:
            return self._commit()
        return (rp.FW_ERR_STATE, mtype)

    def _open(self, index: int, size: int, raw_name: bytes) -> tuple:  # type: ignore[type-arg]
        try:
            name = bytes(raw_name).rstrip(b"\x00").decode()
        except (UnicodeError, ValueError):
            return (rp.FW_ERR_NAME, index)
        if not valid_name(name):
            return (rp.FW_ERR_NAME, index)
        if size > MAX_FILE or index >= MAX_FILES:
            return (rp.FW_ERR_SIZE, size)
        blocks = (size + rp.FW_BLOCK - 1) // rp.FW_BLOCK
        self.files[index] = [name, size, bytearray(size), bytearray(blocks), False, blocks]
        return (rp.FW_OK, index)

    def _data(self, index: int, block: int, length: int, data: bytes) -> None:
        entry = self.files.get(index)
        if entry is None:
            return
        offset = block * rp.FW_BLOCK
        if length > rp.FW_BLOCK or offset + length > entry[1] or block >= len(entry[3]):
            return  # CLOSE will find the block missing
        entry[2][offset:offset + length] = data[:length]
        if not entry[3][block]:
            entry[3][block] = 1
            entry[5] -= 1  # blocks still missing

    def _close(self, index: int, crc: int) -> tuple:  # type: ignore[type-arg]
        entry = self.files.get(index)
        if entry is None:
            return (rp.FW_ERR_STATE, index)
        if entry[5] or (binascii.crc32(entry[2]) & 0xFFFFFFFF) != crc:
            return (rp.FW_ERR_CRC, index)
        try:
            self.fs.write(entry[0] + ".new", bytes(entry[2]))
            if binascii.crc32(self.fs.read(entry[0] + ".new")) & 0xFFFFFFFF != crc:
                return (rp.FW_ERR_IO, index)  # read back: what the flash holds, not what we meant
        except OSError:
            return (rp.FW_ERR_IO, index)
        entry[2] = b""  # the bytes are on flash now; free the RAM
        entry[4] = True
        return (rp.FW_OK, index)

    def _commit(self) -> tuple:  # type: ignore[type-arg]
        names = [e[0] for e in self.files.values()]
        if not names or not all(e[4] for e in self.files.values()):
            return (rp.FW_ERR_STATE, len(names))
        try:
            boot_guard.begin_trial(self.fs, names)
            for name in names:
                if self.fs.exists(name):
                    self.fs.rename(name, name + ".bak")
                self.fs.rename(name + ".new", name)
        except OSError:
            boot_guard.restore(self.fs)
            return (rp.FW_ERR_IO, 0)
        self.reset_requested = True
        return (rp.FW_OK, len(names))

    def _confirm(self) -> tuple:  # type: ignore[type-arg]
        try:
            done = boot_guard.confirm(self.fs)
        except OSError:
            return (rp.FW_ERR_IO, 0)
        self.active = False
        return (rp.FW_OK if done else rp.FW_ERR_STATE, 0)

    def _drop_staged(self) -> None:
        for entry in self.files.values():
            self.fs.remove(entry[0] + ".new")
        self.files = {}
