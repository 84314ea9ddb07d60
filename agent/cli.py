"""`spbu` command line. Errors are one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from agent import __version__

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    pass


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    if args.pumps < 1 or args.pumps > 16:
        raise CliError("--pumps must be between 1 and 16")
    if args.customers < 1 or args.customers > 1000:
        raise CliError("--customers must be between 1 and 1000")
    if not 1 <= args.nozzles <= 2 or (args.nozzles > 1 and args.pump != "dart"):
        raise CliError("--nozzles must be 1 or 2, and more than 1 needs --pump dart")
    if args.attendant:
        from agent.attendant.files import AttendantPageMissing, attendant_dir

        try:
            attendant_dir()
        except AttendantPageMissing as exc:
            raise CliError(str(exc)) from exc
    if args.dashboard:
        from agent.dashboard_files import DashboardMissing, dashboard_dir

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
                    json_path=args.json, flow_lps=args.flow_lps, timeout_s=args.timeout, pump_kind=args.pump,
                    dashboard=args.dashboard, attendant=args.attendant, nozzles=args.nozzles)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _serve_until_stopped(close: Callable[[], None]) -> None:
    """A simulator's foreground: wait for Ctrl-C or SIGTERM, then shut the device down."""
    stop = _stop_on_signals()
    try:
        while not stop.wait(1.0):  # a timed wait: signal handlers run between waits
            pass
    finally:
        close()


def _cmd_agent_run(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.sdnotify import Notifier
    from agent.service import serve
    from agent.station import Station

    config = load_config(args.config)
    stop = _stop_on_signals()
    station = Station(config)
    station.config_path = args.config  # the reload_config command re-reads it
    serve(station, Notifier(), stop)
    return station.exit_code or 0  # a release switch or rollback: systemd starts us again


def _cmd_check_config(args: argparse.Namespace) -> int:
    from agent.config import load_config

    config = load_config(args.config)
    print(f"{args.config}: OK: station {config.station_id} ({config.zone}), {len(config.pumps)} pumps on "
          f"{config.relay_board_kind} {config.relay_board_port}, {len(config.trusted_keys)} trusted keys, "
          f"data in {config.data_dir}")
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.signing import key_id, public_key_hex, save_private_key

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
          f" {args.flow_lpm:g} L/min, faults: {', '.join(args.fault) or 'none'}; Ctrl-C to stop", flush=True)
    _serve_until_stopped(board.close)
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
    _serve_until_stopped(edc.close)
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
    """Headquarters: signed list and policy, and the collector + national usage ledger on
    PostgreSQL (`--db`, or a private one started here), so stations count the quota nationally."""
    from agent.cli_sync import run_collector
    from agent.signing import load_private_key
    from simulators.hq import HeadquartersSim, synthetic_registry
    from simulators.postgres import PostgresError, PostgresServer

    if args.collect_only:
        if args.db is None:
            raise CliError("--collect-only needs --db")
        return run_collector(args, "")
    pg = None
    if args.db is None:
        try:
            pg = PostgresServer(durable=True).start()
        except PostgresError as exc:
            raise CliError(str(exc)) from exc
        args.db = pg.create_database("ledger")
    key = load_private_key(args.key) if args.key else None
    publisher = HeadquartersSim(args.host, args.port, synthetic_registry(args.vehicles), key=key, collect=False,
                                usage_feed={"stale_after_s": 120, "offline_share": 0.5})
    try:
        publisher.start()
        publisher.publish_documents()
        return run_collector(args, f"headquarters on {args.host}:{args.port}: key {publisher.key_id} "
                                   f"({publisher.public_key_hex}), {len(publisher.registry)} vehicles published\n",
                             keys=[publisher.key])
    finally:
        publisher.close()
        if pg is not None:
            pg.close()


def _cmd_hw_test(args: argparse.Namespace) -> int:
    from agent.hwtest import run_hw_test

    return run_hw_test(args.port, args.channel, interactive=not args.no_prompt, dart=args.dart)


def _cmd_provision(args: argparse.Namespace) -> int:
    from agent.provision import ProvisionError, provision

    try:
        checks = provision(args.station, args.zone, args.etc, args.data, args.trust, args.kind, args.board,
                           args.pump, force=args.force)
    except ProvisionError as exc:
        raise CliError(str(exc)) from exc
    for check in checks:
        print(f"[{'x' if check.ok else ' '}] {check.item}: {check.detail}")
    print("next: systemctl start spbu-agent; then spbu hw test --port <pump controller> (docs/deploy.md)")
    return 0 if all(c.ok for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spbu", description="SPBU edge agent: offline subsidised-fuel "
                                     "eligibility, pump control, journal and sync.")
    parser.add_argument("--version", action="version", version=f"spbu-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run a whole simulated station on a private broker")
    demo.add_argument("--pumps", type=int, default=2, help="fuelling points (default 2)")
    demo.add_argument("--customers", type=int, default=12,
                      help="scripted customers (default 12; the required cases always run)")
    demo.add_argument("--lang", choices=("id", "en"), default="id", help="attendant language")
    demo.add_argument("--json", type=Path, help="write the reconciliation summary here")
    demo.add_argument("--flow-lps", type=float, default=25.0,
                      help="simulated flow in litres per second (sped up; a real nozzle gives ~0.67)")
    demo.add_argument("--timeout", type=float, default=60.0, help="overall time budget in seconds")
    demo.add_argument("--pump", choices=("relay", "dart"), default="relay",
                      help="relay board with retrofitted dispensers (default) or Wayne DART pumps")
    demo.add_argument("--nozzles", type=int, default=1,
                      help="grades per DART dispenser, 1..2 (with --pump dart): the nozzle lifted decides the product")
    demo.add_argument("--attendant", action="store_true",
                      help="keep the station running and serve the attendant's page over TLS (prints the "
                           "address, the device link and the attendant's number and PIN)")
    demo.add_argument("--dashboard", action="store_true",
                      help="keep the station running and serve the manager's dashboard (prints the URL)")
    demo.set_defaults(func=_cmd_demo)

    agent = sub.add_parser("agent", help="the station agent")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    run = agent_sub.add_parser("run", help="run the agent with a station config")
    run.add_argument("--config", type=Path, required=True, help="station TOML config")
    run.set_defaults(func=_cmd_agent_run)
    check = agent_sub.add_parser("check-config", help="validate a station config and say what it sets up")
    check.add_argument("config", type=Path, help="station TOML config")
    check.set_defaults(func=_cmd_check_config)

    prov = sub.add_parser("provision", help="make this Pi station N: config, station key and CSR, trust, checks")
    prov.add_argument("--station", required=True, help="station id, e.g. 34.401.01")
    prov.add_argument("--zone", default="WIB", choices=("WIB", "WITA", "WIT"))
    prov.add_argument("--trust", type=Path, action="append", default=[], required=True,
                      help="headquarters' root.json (spbu allowlist keygen), or a signing public key "
                      "(hex file, older single-key trust); repeatable")
    prov.add_argument("--kind", default="uart", choices=("uart", "dart", "gpio"), help="pump controller")
    prov.add_argument("--board", default="/dev/spbu-relay", help="relay board or DART line device")
    prov.add_argument("--pump", action="append", default=[], metavar="N:PRODUCT:SCANNER",
                      help="a fuelling point, e.g. 1:pertalite:/dev/spbu-scanner-1; repeatable, in channel order")
    prov.add_argument("--etc", type=Path, default=Path("/etc/spbu"))
    prov.add_argument("--data", type=Path, default=Path("/var/lib/spbu"))
    prov.add_argument("--force", action="store_true", help="replace an existing station's config and key")
    prov.set_defaults(func=_cmd_provision)

    keys = sub.add_parser("keys", help="signing keys, test CA and TLS certificates")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser("generate", help="generate an Ed25519 key pair")
    gen.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.pub")
    gen.add_argument("--name", default="hq-signing", help="file name stem")
    gen.add_argument("--force", action="store_true", help="replace an existing key")
    gen.set_defaults(func=_cmd_keys_generate)
    from agent.cli_sync import add_key_commands

    add_key_commands(keys_sub)

    from agent.attendant_cli import add_attendant_commands

    add_attendant_commands(sub)
    from agent.qr_cli import add_scan_parser, add_token_parser

    add_token_parser(sub)
    add_scan_parser(sub)

    hw = sub.add_parser("hw", help="hardware checks for field technicians")
    hw_sub = hw.add_subparsers(dest="hw_command", metavar="ACTION", required=True)
    hwtest = hw_sub.add_parser("test", help="step-by-step check of a relay board: link, relay, nozzle, pulser, "
                               "dead-man, E-stop")
    hwtest.add_argument("--port", required=True, help="the board's serial device, e.g. /dev/spbu-relay")
    hwtest.add_argument("--channel", type=int, default=0, help="fuelling point on the board (default 0)")
    hwtest.add_argument("--no-prompt", action="store_true", help="skip the steps that need a person")
    hwtest.add_argument("--dart", action="store_true", help="the port is a DART line (channel i = pump 0x50+i)")
    hwtest.set_defaults(func=_cmd_hw_test)

    sim = sub.add_parser("sim", help="device and headquarters simulators")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="DEVICE", required=True)
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
    edc = sim_sub.add_parser("edc", help="bank EDC card terminal (ECR protocol) on a pseudo-terminal or serial "
                             "port: approvals, declines, lost answers, power cycles")
    edc.add_argument("--port", help="serial device to serve on (default: a new pseudo-terminal)")
    edc.add_argument("--baud", type=int, default=9600)
    edc.add_argument("--state", type=Path, help="JSON file keeping the terminal's batch across restarts")
    edc.add_argument("--script", action="append", default=[], metavar="BEHAVIOUR",
                     help="how to answer the next request, in order (repeatable): approve, decline:51, slow:5, "
                          "no_answer, nak:2, garble, power_cycle:3, offline:10")
    edc.set_defaults(func=_cmd_sim_edc)
    scanner = sim_sub.add_parser("scanner", help="serial QR scanner on a pseudo-terminal, fed from stdin")
    scanner.add_argument("--port", help="serial device to type on (default: a new pseudo-terminal)")
    scanner.add_argument("--link", type=Path, help="also make this symlink to the device, like a udev name")
    scanner.add_argument("--suffix", choices=("cr", "lf", "crlf"), default="crlf", help="line end (default crlf)")
    scanner.add_argument("--no-aim", action="store_true", help="no ]Q1 symbology prefix")
    scanner.add_argument("--chunk", type=int, default=0, help="bytes per write, like USB packets (0: whole line)")
    scanner.add_argument("--noise", type=float, default=0.0, help="chance of a garbage line before a scan")
    scanner.set_defaults(func=_cmd_sim_scanner)
    hq = sim_sub.add_parser("hq", help="headquarters: publish signed list and policy, collect transactions")
    hq.add_argument("--host", default="127.0.0.1")
    hq.add_argument("--port", type=int, default=1883)
    hq.add_argument("--key", type=Path, help="signing key (PEM); a new one if omitted")
    hq.add_argument("--vehicles", type=int, default=1200)
    hq.add_argument("--db", help="PostgreSQL connection string for the collector and usage ledger, shared by "
                    "several processes (default: a private PostgreSQL for this run)")
    hq.add_argument("--collect-only", action="store_true", help="with --db: one more collector process, "
                    "no documents published")
    hq.add_argument("--name", help="collector name (default: random)")
    hq.set_defaults(func=_cmd_sim_hq)

    from agent.allowlist_cli import add_allowlist_commands

    add_allowlist_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    from agent.config import ConfigError
    from agent.signing import SignatureError
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


