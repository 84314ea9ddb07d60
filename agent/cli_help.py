"""Every option's default in its --help: added once for the whole tree of sub-commands,
so a new option cannot forget it."""

from __future__ import annotations

import argparse


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
