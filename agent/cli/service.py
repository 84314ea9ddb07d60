"""`spbu agent run | check-config | status`: every one takes `--config FILE`, default
/etc/spbu/agent.toml (check-config also takes the file as its argument, the older spelling)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/spbu/agent.toml")


def _config_path(args: argparse.Namespace) -> Path:
    path: Path = args.config_file or args.config
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from agent.cli.errors import stop_on_signals
    from agent.config import load_config
    from agent.sdnotify import Notifier
    from agent.service import serve
    from agent.station import Station

    path = _config_path(args)
    config = load_config(path)
    stop = stop_on_signals()
    station = Station(config)
    station.config_path = path  # the reload_config command re-reads it
    serve(station, Notifier(), stop)
    return station.exit_code or 0  # a release switch or rollback: systemd starts us again


def cmd_check_config(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.config_check import check

    path = _config_path(args)
    config = load_config(path)
    print(f"{path}: station {config.station_id} ({config.zone}), {len(config.pumps)} pumps on "
          f"{config.relay_board_kind} {config.relay_board_port}, {len(config.trusted_keys)} trusted keys, "
          f"data in {config.data_dir}")
    findings = check(config, devices=not args.skip_devices)
    for finding in findings:
        mark = "ok" if finding.ok else "FAIL" if finding.blocking else "warn"
        print(f"[{mark:4}] {finding.item}: {finding.detail}")
    failed = [f for f in findings if not f.ok and f.blocking]
    print("OK" if not failed else f"NOT OK: {len(failed)} problem(s) above")
    return 0 if not failed else 1


def cmd_status(args: argparse.Namespace) -> int:
    from agent.cli.errors import CliError
    from agent.config import load_config
    from agent.status_socket import SOCKET_NAME, query, render

    config = load_config(_config_path(args))
    try:
        status = query(config.data_dir)
    except (OSError, ValueError) as exc:
        raise CliError(f"no agent answers on {config.data_dir / SOCKET_NAME} ({exc}): is it running? "
                       "systemctl status spbu-agent") from exc
    print(json.dumps(status, indent=2) if args.json else "\n".join(render(status)))
    return 0


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="station TOML config (default: %(default)s)")


def add_agent_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser("agent", help="the station agent")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    run = agent_sub.add_parser("run", help="run the agent (logs at INFO unless told otherwise)")
    _config_option(run)
    run.set_defaults(func=cmd_run, config_file=None, log_boost=1)
    check = agent_sub.add_parser("check-config", help="check a station config and this machine: keys, devices, "
                                 "optional extras, data directory; exit 1 on a problem")
    _config_option(check)
    check.add_argument("config_file", type=Path, nargs="?", metavar="CONFIG", help="same as --config (older spelling)")
    check.add_argument("--skip-devices", action="store_true",
                       help="report missing devices without failing (the service's start check: a station runs "
                       "with a scanner unplugged)")
    check.set_defaults(func=cmd_check_config)
    status = agent_sub.add_parser("status", help="ask the running agent how it is (pumps, devices, broker, disk)")
    _config_option(status)
    status.add_argument("--json", action="store_true", help="the raw status object")
    status.set_defaults(func=cmd_status, config_file=None)
