"""Keyboard (or scripted) control of a running simulator, so a technician can rehearse at
the bench: lift and hang nozzles, press and release the E-stop, make a pump stop
answering, deliver fuel into a tank or make it leak. One command per line, from the
terminal or from a file piped in:

    lift C [N]      lift nozzle N (default 1) on channel C (DART: pump 0x50 + C)
    hang C          hang the nozzle up on channel C
    estop           press the E-stop (relay board)
    release         release the E-stop and press the board's reset button
    dead C          DART: pump C stops answering (cable cut, head without power)
    alive C         DART: pump C answers again
    deliver T L     tank gauge: a tanker drops L litres into tank T
    leak T LPH      tank gauge: tank T loses LPH litres an hour (0 stops the leak)
    status          what the simulator shows now
    help | quit

Unknown commands and bad numbers get one line of explanation; nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TextIO

HELP = __doc__.split("\n\n")[1] if __doc__ else ""

# command -> (simulator method, number of integer arguments required, optional)
COMMANDS: dict[str, tuple[str, int, int]] = {
    "lift": ("lift_nozzle", 1, 1),
    "hang": ("hang_nozzle", 1, 0),
    "estop": ("press_estop", 0, 0),
    "dead": ("set_dead", 1, 0),
    "alive": ("set_dead", 1, 0),
    "deliver": ("deliver", 2, 0),
    "leak": ("set_leak", 2, 0),
}


def execute(target: Any, line: str) -> str:
    """One command line -> one line of answer. Raises nothing on bad input."""
    words = line.split()
    if not words:
        return ""
    name, args = words[0].lower(), words[1:]
    if name == "help":
        return HELP
    if name == "status":
        status = getattr(target, "status_text", None)
        return status() if status else "no status for this simulator"
    if name == "release":
        if not hasattr(target, "release_estop"):
            return "release: this simulator has no E-stop"
        target.release_estop()
        target.press_reset()
        return "E-stop released and board reset"
    if name not in COMMANDS:
        return f"unknown command {name!r}; type help"
    method, required, optional = COMMANDS[name]
    if not required <= len(args) <= required + optional:
        return f"{name}: needs {required} number(s)" + (f" (+{optional} optional)" if optional else "")
    try:
        numbers = [float(a) if name in ("deliver", "leak") else int(a) for a in args]
    except ValueError:
        return f"{name}: {' '.join(args)} is not a number"
    call: Callable[..., Any] | None = getattr(target, method, None)
    if call is None:
        return f"{name}: not available on this simulator"
    if name in ("dead", "alive"):
        numbers.append(name == "dead")
    try:
        call(*numbers)
    except (IndexError, KeyError):
        return f"{name}: no such channel or tank"
    except (ValueError, TypeError) as exc:  # e.g. a nozzle number on a one-nozzle simulator
        return f"{name}: {exc}"
    return f"ok: {line.strip()}"


def run_console(target: Any, lines: Iterable[str], out: TextIO, stop: Callable[[], None]) -> None:
    """Read commands until `quit` or the end of input; `stop` ends the simulator on quit."""
    for line in lines:
        if line.strip().lower() in ("quit", "exit"):
            stop()
            return
        answer = execute(target, line)
        if answer:
            print(answer, file=out, flush=True)
