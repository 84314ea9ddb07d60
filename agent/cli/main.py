"""`spbu` command line. Errors are one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from agent import __version__
from agent.cli.errors import EXIT_FAILURE, EXIT_USAGE, CliError, serve_until_stopped, stop_on_signals
from agent.cli.help import Renamed


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.cli.demo import run_demo

    if args.pumps < 1 or args.pumps > 16:
        raise CliError("--pumps must be between 1 and 16")
    if args.customers < 1 or args.customers > 1000:
        raise CliError("--customers must be between 1 and 1000")
    if args.nozzles is None:
        args.nozzles = 2 if args.controller == "dart" else 1  # DART dispensers carry two grades by default
    if not 1 <= args.nozzles <= 2 or (args.nozzles > 1 and args.controller != "dart"):
        raise CliError("--nozzles must be 1 or 2, and more than 1 needs --controller dart")
    if not 1 <= args.islands <= 4 or args.islands > args.pumps:
        raise CliError("--islands must be 1..4 and at most --pumps")
    if args.attendant:
        from agent.attendant.files import AttendantPageMissing, attendant_dir

        try:
            attendant_dir()
        except AttendantPageMissing as exc:
            raise CliError(str(exc)) from exc
    if args.dashboard:
        from agent.cli.dashboard_files import DashboardMissing, dashboard_dir

        try:
            dashboard_dir()
        except DashboardMissing as exc:
            raise CliError(str(exc)) from exc

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM both unwind through the demo's clean-up, even when the shell
    # that started us had set SIGINT to be ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    return run_demo(pumps=args.pumps, customers=args.customers, lang=args.lang,
                    json_path=args.json, flow_lps=args.flow_lps, timeout_s=args.timeout, pump_kind=args.controller,
                    dashboard=args.dashboard, attendant=args.attendant, nozzles=args.nozzles, leak=args.leak,
                    islands=args.islands)




def _console_wanted() -> bool:
    """Commands come from a pipe or file, or from the terminal when we run in its foreground
    (a background job reading its terminal would be stopped by SIGTTIN)."""
    try:
        if not os.isatty(0):
            return True
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _serve_with_console(target: object, close: Callable[[], None]) -> None:
    """A simulator's foreground with keyboard control (simulators/console.py): commands
    from stdin until `quit`, end of input, Ctrl-C or SIGTERM."""
    from simulators.console import run_console

    stop = stop_on_signals()
    if _console_wanted():
        threading.Thread(target=run_console, args=(target, sys.stdin, sys.stdout, stop.set),
                         name="console", daemon=True).start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        close()


def _cmd_sim_dart(args: argparse.Namespace) -> int:
    from simulators.dart_pump import DartPumpSim
    from simulators.dispenser import Faults
    from simulators.pty_device import SerialDevice

    if not 1 <= args.pumps <= 32 or not 1 <= args.nozzles <= 4:
        raise CliError("--pumps must be 1..32 and --nozzles 1..4")
    faults = Faults(no_flow="no_flow" in args.fault, overrun_pulses=20 if "overrun" in args.fault else 0)
    try:
        device = SerialDevice(args.port, args.baud, odd_parity=True) if args.port else None
    except (OSError, AttributeError) as exc:
        raise CliError(f"cannot open {args.port}: {exc}") from exc
    line = DartPumpSim(pumps=args.pumps, flow_lps=args.flow_lpm / 60, ramp_s=args.ramp_s, faults=faults,
                       nozzles=args.nozzles, device=device)
    for channel in args.dead:
        line.set_dead(channel, True)
    line.start()
    print(f"DART line on {line.path}: pumps 50..{0x50 + args.pumps - 1:02X}, {args.nozzles} nozzle(s) each,"
          f" {args.flow_lpm:g} L/min; type help for commands, Ctrl-C to stop", flush=True)
    _serve_with_console(line, line.close)
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.trust.signing import key_id, public_key_hex, save_private_key

    args.out.mkdir(parents=True, exist_ok=True)
    private = args.out / f"{args.name}.key"
    if private.exists() and not args.force:
        raise CliError(f"{private} exists; use --force to replace it")
    key = Ed25519PrivateKey.generate()
    save_private_key(key, private)
    public = args.out / f"{args.name}.pub"
    public.write_text(public_key_hex(key.public_key()) + "\n")
    print(f"key id {key_id(key.public_key())}\nprivate {private}\npublic  {public}")
    return 0


def _cmd_sim_relay_board(args: argparse.Namespace) -> int:
    from hal.firmware.main import __file__ as FIRMWARE
    from simulators.dispenser import Faults
    from simulators.relay_board import RelayBoardSim

    faults = Faults(no_flow="no_flow" in args.fault, stuck_valve="stuck_valve" in args.fault,
                    pulser_noise_hz=5.0 if "pulser_noise" in args.fault else 0.0,
                    overrun_pulses=20 if "overrun" in args.fault else 0)
    try:
        board = RelayBoardSim(channels=args.channels, flow_lps=args.flow_lpm / 60, ramp_s=args.ramp_s,
                              pulses_per_litre=args.pulses_per_litre, faults=faults, port=args.port)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    board.start()
    print(f"relay board (firmware {FIRMWARE}) on {board.path}, {args.channels} channels,"
          f" {args.flow_lpm:g} L/min, faults: {', '.join(args.fault) or 'none'}; type help for commands,"
          " Ctrl-C to stop", flush=True)
    _serve_with_console(board, board.close)
    return 0


def _cmd_sim_edc(args: argparse.Namespace) -> int:
    from simulators.edc import BEHAVIOURS, EdcSim

    for behaviour in args.script:
        if behaviour.split(":", 1)[0] not in BEHAVIOURS:
            raise CliError(f"unknown behaviour {behaviour!r}; one of {', '.join(BEHAVIOURS)}")
    try:
        edc = EdcSim(args.state, port=args.port, baudrate=args.baud)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot serve on {args.port}: {exc}") from exc
    edc.script(*args.script)
    edc.start()
    print(f"EDC terminal on {edc.path}, batch {args.state or 'in memory'}, script: "
          f"{', '.join(args.script) or 'approve everything'}; Ctrl-C to stop", flush=True)
    serve_until_stopped(edc.close)
    charged = edc.net_charged()
    print(f"{len(edc.ledger())} records; still charged: Rp {sum(charged.values())} over {len(charged)} sales")
    return 0


def _cmd_sim_scanner(args: argparse.Namespace) -> int:
    from simulators.scanner import ScannerSim

    suffix = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}[args.suffix]
    scanner = ScannerSim(suffix=suffix, aim_prefix=not args.no_aim, chunk=args.chunk, noise=args.noise,
                         link=args.link, port=args.port)
    print(f"scanner on {scanner.path}; type one code per line, Ctrl-D to stop", flush=True)
    try:
        for line in sys.stdin:
            if line.strip():
                scanner.scan(line.strip())
    finally:
        scanner.close()
    return 0


def _cmd_sim_hq(args: argparse.Namespace) -> int:
    from agent.cli.keys import run_collector
    from agent.trust.signing import load_private_key
    from simulators.hq import HeadquartersSim, synthetic_registry

    if args.db is not None:
        if args.collect_only:
            return run_collector(args, "")
        key = load_private_key(args.key) if args.key else None
        publisher = HeadquartersSim(args.host, args.port, synthetic_registry(args.vehicles), key=key, collect=False)
        publisher.start()
        try:
            publisher.publish_documents()
            return run_collector(args, f"headquarters: key {publisher.key_id} ({publisher.public_key_hex}), "
                                        f"{len(publisher.registry)} vehicles published\n", publisher.key)
        finally:
            publisher.close()
    if args.collect_only:
        raise CliError("--collect-only needs --db")
    if not args.local:
        from agent.cli.sim_hq import run_with_private_ledger

        done = run_with_private_ledger(args)
        if done is not None:
            return done
    key = load_private_key(args.key) if args.key else None
    hq = HeadquartersSim(args.host, args.port, synthetic_registry(args.vehicles), key=key)
    hq.start()
    hq.publish_documents()
    print(f"headquarters on {args.host}:{args.port}: key {hq.key_id} ({hq.public_key_hex}),"
          f" {len(hq.registry)} vehicles published; collecting transactions", flush=True)
    stop = stop_on_signals()
    seen = 0
    try:
        while not stop.wait(1.0):
            txs = hq.transactions()
            for tx in txs[seen:]:
                print(f"{tx['tx_id']} pump {tx['pump']} {tx['product']} {tx['dispensed_ml']} ml", flush=True)
            seen = len(txs)
    finally:
        hq.close()
    return 0


def _cmd_hw_test(args: argparse.Namespace) -> int:
    from agent.cli.hw_test import run_hw_test

    if args.atg:
        from agent.cli.hw_test_atg import run_atg_test

        return run_atg_test(args.port, sys.stdout)
    return run_hw_test(args.port, args.channel, interactive=not args.no_prompt, dart=args.controller == "dart")


def _cmd_provision(args: argparse.Namespace) -> int:
    from agent.cli.provision import ProvisionError, provision

    try:
        checks = provision(args.station, args.zone, args.etc, args.data, args.trust,
                           "uart" if args.controller == "relay" else args.controller, args.port, args.pump,
                           force=args.force)
    except ProvisionError as exc:
        raise CliError(str(exc)) from exc
    for check in checks:
        print(f"[{'x' if check.ok else ' '}] {check.item}: {check.detail}")
    print("next: systemctl start spbu-agent; then spbu hw test --port <pump controller> (docs/deploy.md)")
    return 0 if all(c.ok for c in checks) else 1


def _add_demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """spbu demo: a whole simulated station."""
    demo = sub.add_parser("demo", help="run a whole simulated station on a private broker")
    demo.add_argument("--pumps", type=int, default=2, help="fuelling points (default 2)")
    demo.add_argument("--customers", type=int, default=12,
                      help="scripted customers (default 12; the required cases always run)")
    demo.add_argument("--lang", choices=("id", "en"), default="id", help="attendant language")
    demo.add_argument("--json", type=Path, help="write the reconciliation summary here")
    demo.add_argument("--flow-lps", type=float, default=25.0,
                      help="simulated flow in litres per second (sped up; a real nozzle gives ~0.67)")
    demo.add_argument("--timeout", type=float, default=60.0, help="overall time budget in seconds")
    demo.add_argument("--controller", choices=("relay", "dart"), default="relay",
                      help="pump controller: relay board with retrofitted dispensers, or Wayne DART pumps")
    demo.add_argument("--pump", dest="controller", action=Renamed, new="--controller", choices=("relay", "dart"))
    demo.add_argument("--leak", action="store_true",
                      help="tank 1 leaks: the shift reconciliation must raise the variance alarm")
    demo.add_argument("--nozzles", type=int, default=None,
                      help="grades per DART dispenser, 1..2 (default 2 with --controller dart): the nozzle lifted "
                           "decides the product")
    demo.add_argument("--islands", type=int, default=1,
                      help="islands, each with its own relay board or DART line and EDC terminal (default 1)")
    demo.add_argument("--attendant", action="store_true",
                      help="keep the station running and serve the attendant's page over TLS (prints the "
                           "address, the device link and the attendant's number and PIN)")
    demo.add_argument("--dashboard", action="store_true",
                      help="keep the station running and serve the manager's dashboard (prints the URL)")
    demo.set_defaults(func=_cmd_demo)


def _add_provision_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """spbu provision: make this Pi a station."""
    prov = sub.add_parser("provision", help="make this Pi station N: config, station key and CSR, trust, checks")
    prov.add_argument("--station", required=True, help="station id, e.g. 34.401.01")
    prov.add_argument("--zone", default="WIB", choices=("WIB", "WITA", "WIT"))
    prov.add_argument("--trust", type=Path, action="append", default=[], required=True,
                      help="headquarters' root.json (spbu allowlist keygen), or a signing public key "
                      "(hex file, older single-key trust); repeatable")
    prov.add_argument("--controller", default="relay", choices=("relay", "dart", "gpio"), help="pump controller")
    prov.add_argument("--kind", dest="controller", action=Renamed, new="--controller", values={"uart": "relay"},
                      choices=("uart", "relay", "dart", "gpio"))
    prov.add_argument("--port", default="/dev/spbu-relay", help="the pump controller's serial device (relay board "
                      "or DART line)")
    prov.add_argument("--board", dest="port", action=Renamed, new="--port")
    prov.add_argument("--pump", action="append", default=[], metavar="N:PRODUCT:SCANNER",
                      help="a fuelling point, e.g. 1:pertalite:/dev/spbu-scanner-1; repeatable, in channel order")
    prov.add_argument("--etc", type=Path, default=Path("/etc/spbu"))
    prov.add_argument("--data", type=Path, default=Path("/var/lib/spbu"))
    prov.add_argument("--force", action="store_true", help="replace an existing station's config and key")
    prov.set_defaults(func=_cmd_provision)


def _add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """spbu keys: signing keys, CA and certificates."""
    keys = sub.add_parser("keys", help="signing keys, test CA and TLS certificates")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser("generate", help="generate an Ed25519 key pair")
    gen.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.pub")
    gen.add_argument("--name", default="hq-signing", help="file name stem")
    gen.add_argument("--force", action="store_true", help="replace an existing key")
    gen.set_defaults(func=_cmd_keys_generate)
    from agent.cli.keys import add_key_commands

    add_key_commands(keys_sub)


def _add_hw_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """spbu hw: the field technician's checks."""
    hw = sub.add_parser("hw", help="hardware checks for field technicians")
    hw_sub = hw.add_subparsers(dest="hw_command", metavar="ACTION", required=True)
    hwtest = hw_sub.add_parser("test", help="step-by-step check of a pump controller: link, relay, nozzle, pulser, "
                               "dead-man, E-stop")
    hwtest.add_argument("--port", required=True, help="the board's serial device, e.g. /dev/spbu-relay")
    hwtest.add_argument("--channel", type=int, default=0, help="fuelling point on the board (default 0)")
    hwtest.add_argument("--no-prompt", action="store_true", help="skip the steps that need a person")
    hwtest.add_argument("--controller", choices=("relay", "dart"), default="relay",
                        help="what is on the port: a relay board, or a DART line (channel i = pump 0x50+i)")
    hwtest.add_argument("--dart", dest="controller", action=Renamed, new="--controller dart", nargs=0, const="dart")
    hwtest.add_argument("--atg", action="store_true",
                        help="the port is a tank gauge (Veeder-Root TLS computer interface): inventory, alarms, "
                             "deliveries")
    hwtest.set_defaults(func=_cmd_hw_test)


def _add_sim_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """spbu sim: the device and headquarters simulators."""
    sim = sub.add_parser("sim", help="device and headquarters simulators")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="DEVICE", required=True)
    for add in (_add_sim_relay_board, _add_sim_dart, _add_sim_edc, _add_sim_scanner, _add_sim_hq):
        add(sim_sub)


def _add_sim_relay_board(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The relay board with its real firmware."""
    board = sim_sub.add_parser("relay-board", help="relay board (its real firmware) and dispensers, on a "
                               "pseudo-terminal or a serial port")
    board.add_argument("--channels", type=int, default=2)
    board.add_argument("--port", help="serial device to serve on (default: a new pseudo-terminal)")
    board.add_argument("--flow-lpm", type=float, default=40.0, help="nominal flow, litres per minute")
    board.add_argument("--ramp-s", type=float, default=1.0, help="seconds for the flow to reach nominal")
    board.add_argument("--pulses-per-litre", type=int, default=100)
    board.add_argument("--fault", action="append", default=[],
                       choices=("no_flow", "stuck_valve", "pulser_noise", "overrun"),
                       help="inject a dispenser fault (repeatable)")
    board.set_defaults(func=_cmd_sim_relay_board)


def _add_sim_dart(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Wayne DART pumps on one line."""
    dart = sim_sub.add_parser("dart", help="Wayne DART pumps with 1..4 nozzles on one line, on a pseudo-terminal "
                              "or a real RS-485 adapter; keyboard commands lift/hang nozzles and kill pumps")
    dart.add_argument("--pumps", type=int, default=2, help="pumps on the line, addresses 0x50 up (default 2)")
    dart.add_argument("--nozzles", type=int, default=1, help="logical nozzles (grades) per pump, 1..4")
    dart.add_argument("--port", help="serial device to serve on (default: a new pseudo-terminal)")
    dart.add_argument("--baud", type=int, default=9600, choices=(9600, 19200))
    dart.add_argument("--flow-lpm", type=float, default=40.0, help="nominal flow, litres per minute")
    dart.add_argument("--ramp-s", type=float, default=1.0, help="seconds for the flow to reach nominal")
    dart.add_argument("--dead", type=int, action="append", default=[],
                      help="channel of a pump that never answers (repeatable)")
    dart.add_argument("--fault", action="append", default=[], choices=("no_flow", "overrun"),
                      help="inject a dispenser fault into every pump (repeatable)")
    dart.set_defaults(func=_cmd_sim_dart)


def _add_sim_edc(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The bank's EDC terminal."""
    edc = sim_sub.add_parser("edc", help="bank EDC card terminal (ECR protocol) on a pseudo-terminal or serial "
                             "port: approvals, declines, lost answers, power cycles")
    edc.add_argument("--port", help="serial device to serve on (default: a new pseudo-terminal)")
    edc.add_argument("--baud", type=int, default=9600)
    edc.add_argument("--state", type=Path, help="JSON file keeping the terminal's batch across restarts")
    edc.add_argument("--script", action="append", default=[], metavar="BEHAVIOUR",
                     help="how to answer the next request, in order (repeatable): approve, decline:51, slow:5, "
                          "no_answer, nak:2, garble, power_cycle:3, offline:10")
    edc.set_defaults(func=_cmd_sim_edc)


def _add_sim_scanner(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """A serial QR scanner."""
    scanner = sim_sub.add_parser("scanner", help="serial QR scanner on a pseudo-terminal, fed from stdin")
    scanner.add_argument("--port", help="serial device to type on (default: a new pseudo-terminal)")
    scanner.add_argument("--link", type=Path, help="also make this symlink to the device, like a udev name")
    scanner.add_argument("--suffix", choices=("cr", "lf", "crlf"), default="crlf", help="line end (default crlf)")
    scanner.add_argument("--no-aim", action="store_true", help="no ]Q1 symbology prefix")
    scanner.add_argument("--chunk", type=int, default=0, help="bytes per write, like USB packets (0: whole line)")
    scanner.add_argument("--noise", type=float, default=0.0, help="chance of a garbage line before a scan")
    scanner.set_defaults(func=_cmd_sim_scanner)


def _add_sim_hq(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Headquarters: documents out, transactions in."""
    hq = sim_sub.add_parser("hq", help="headquarters: publish signed list and policy, collect transactions")
    hq.add_argument("--host", default="127.0.0.1")
    hq.add_argument("--port", type=int, default=1883)
    hq.add_argument("--key", type=Path, help="signing key (PEM); a new one if omitted")
    hq.add_argument("--vehicles", type=int, default=1200)
    hq.add_argument("--db", help="PostgreSQL connection string: collect through the shared subscription into "
                    "headquarters' ledger database "
                    "(several processes may share it)")
    hq.add_argument("--collect-only", action="store_true", help="with --db: one more collector process, "
                    "no documents published")
    hq.add_argument("--name", help="collector name (default: random)")
    hq.add_argument("--local", action="store_true", help="without --db: collect in memory, no national ledger "
                    "(each station counts only its own sales; the default runs the ledger on a private PostgreSQL)")
    hq.add_argument("--station-certs", type=Path, help="with --db: directory of the stations' certificates "
                    "(*.crt); only records these stations signed are stored")
    hq.add_argument("--ca", type=Path, help="with --station-certs: the CA that must have issued them")
    hq.set_defaults(func=_cmd_sim_hq)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spbu", description="SPBU edge agent: offline subsidised-fuel "
                                     "eligibility, pump control, journal and sync.")
    parser.add_argument("--version", action="version", version=f"spbu-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_demo_parser(sub)
    from agent.cli.service import add_agent_commands

    add_agent_commands(sub)

    _add_provision_parser(sub)
    _add_keys_parser(sub)

    from agent.cli.attendant import add_attendant_commands

    add_attendant_commands(sub)
    from agent.cli.qr import add_scan_parser, add_token_parser

    add_token_parser(sub)
    add_scan_parser(sub)

    _add_hw_parser(sub)
    _add_sim_parsers(sub)

    from agent.cli.allowlist import add_allowlist_commands

    add_allowlist_commands(sub)
    from agent.cli.release import add_release_commands

    add_release_commands(sub)
    from agent.cli.help import show_defaults

    show_defaults(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # `agent run` speaks at INFO by default: what it found at start, devices coming and going.
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose + getattr(args, "log_boost", 0), 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    from agent.config import ConfigError
    from agent.trust.signing import SignatureError
    from simulators.broker import BrokerError

    try:
        return func(args)
    except (CliError, ConfigError, SignatureError, BrokerError, TimeoutError) as exc:
        print(f"spbu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, CliError | ConfigError) else EXIT_FAILURE
    except OSError as exc:
        print(f"spbu: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything else is still one clear line, never a bare traceback
        if args.verbose >= 2:
            traceback.print_exc()
        detail = str(exc) or "no detail"
        print(f"spbu: error: {detail} ({type(exc).__name__}; run with -vv for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


