"""The board's /main.py: MicroPython runs it after boot. Never replaced over the air
(hal/firmware/fw_update.py refuses it), so it always runs the boot guard first: a firmware
update that did not prove itself is rolled back before its files are even imported."""

import os

import machine  # type: ignore[import-not-found]

from hal.firmware import boot_guard

boot_guard.boot(machine, boot_guard.OsFs(os))  # type: ignore[no-untyped-call]

from hal.firmware.main import main  # noqa: E402  (after the guard has put the right files in place)

main()
