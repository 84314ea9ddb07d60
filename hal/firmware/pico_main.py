"""The board's /main.py: MicroPython runs it after boot. It only starts the firmware, so
an update replaces the package files and never this entry point's logic."""

from hal.firmware.main import main

main()
