"""The relay board's flash filesystem, simulated: a directory holding the firmware files as
they lie on the board, and a loader that runs them from there (not from this checkout's
hal package), so a firmware update over the UART really changes the code that runs.

Each board gets its own module namespace: the loader gives the flash files a private
`__import__` that resolves `hal...` inside the flash directory, so two boards (or a board
and the agent) in one process never share firmware modules.
"""

from __future__ import annotations

import builtins
import shutil
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# What lies on a board's flash (boot.py and hal/firmware/boot_guard.py, the boot guard,
# are installed once by the technician and never replaced over the air).
FIRMWARE_FILES = ("hal/__init__.py", "hal/crc16.py", "hal/relay_proto.py", "hal/firmware/__init__.py",
                  "hal/firmware/board_core.py", "hal/firmware/fw_update.py", "hal/firmware/main.py")


def seed_flash(flash: Path) -> None:
    """A board as it leaves the bench: this checkout's firmware and boot guard."""
    for rel in (*FIRMWARE_FILES, "hal/firmware/boot_guard.py"):
        (flash / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, flash / rel)


class FlashLoader:
    def __init__(self, flash: Path) -> None:
        self.flash = flash
        self.modules: dict[str, types.ModuleType] = {}
        self._builtins = dict(vars(builtins))
        self._builtins["__import__"] = self._import

    def load(self, name: str) -> types.ModuleType:
        if name in self.modules:
            return self.modules[name]
        if "." in name:
            self.load(name.rsplit(".", 1)[0])
        path = self.flash.joinpath(*name.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        module = types.ModuleType(name)
        module.__file__ = str(source)
        if path.is_dir():
            module.__path__ = [str(path)]
        module.__dict__["__builtins__"] = self._builtins
        self.modules[name] = module
        exec(compile(source.read_text(), str(source), "exec"), module.__dict__)  # the board's own code
        if "." in name:
            parent, leaf = name.rsplit(".", 1)
            setattr(self.modules[parent], leaf, module)
        return module

    def _import(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                level: int = 0) -> Any:
        if name != "hal" and not name.startswith("hal."):
            return builtins.__import__(name, globals, locals, fromlist, level)
        module = self.load(name)
        for item in fromlist or ():
            if not hasattr(module, item):
                self.load(f"{name}.{item}")
        return module if fromlist else self.load(name.split(".")[0])
