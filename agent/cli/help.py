"""How the command line speaks: every option's default in its --help (added once for the
whole tree of sub-commands, so a new option cannot forget it), and old spellings of renamed
options kept for one release.

One idea, one name: the pump controller is `--controller relay|dart|gpio` everywhere (demo,
provision, hw test), its serial device `--port`, the station config `--config FILE`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def show_defaults(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                show_defaults(sub)
            continue
        default = action.default
        if (action.help == argparse.SUPPRESS or default in (None, False, argparse.SUPPRESS, [])
                or not action.option_strings or "default" in (action.help or "")):
            continue
        action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"


class Renamed(argparse.Action):
    """An old spelling kept for one release: it still works, and says the new one on stderr.
    `values` maps old values to new ones (provision --kind uart -> --controller relay)."""

    def __init__(self, option_strings: list[str], dest: str, new: str, values: dict[str, str] | None = None,
                 nargs: int | str | None = None, const: object = None, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=nargs, const=const, help=argparse.SUPPRESS, **kwargs)
        self.new = new
        self.values = values or {}

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"spbu: note: {option_string} is now {self.new}; the old spelling goes in the next release",
              file=sys.stderr)
        value = self.const if self.nargs == 0 else values
        setattr(namespace, self.dest, self.values.get(value, value) if isinstance(value, str) else value)
