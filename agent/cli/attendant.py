"""`spbu attendant pin | device`: provisioning the attendants' app on a station.

  pin     an attendant's PIN hash, printed as the agent.toml lines that let them sign in
  device  enrol a phone on the station broker: its own key (broker password), its pumps in
          the ACL; prints the enrolment link (open it once on the phone) and the agent.toml line
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from agent.cli.errors import CliError


def cmd_pin(args: argparse.Namespace) -> int:
    from agent.attendant.config import ATTENDANT_NUMBER, AttendantConfigError, hash_pin

    if not ATTENDANT_NUMBER.fullmatch(args.number):
        raise CliError("--number: an attendant number is 1 to 8 digits")
    if args.pin_file is not None:
        try:
            pin = args.pin_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read {args.pin_file}: {exc.strerror}") from exc
    elif sys.stdin.isatty():
        pin = getpass.getpass("PIN (4-8 digits): ")
    else:
        pin = sys.stdin.readline().strip()
    try:
        hashed = hash_pin(pin)
    except AttendantConfigError as exc:
        raise CliError(str(exc)) from exc
    name = args.name.replace('"', "'")
    print(f"# add to /etc/spbu/agent.toml\n[attendant.people.{args.number}]\nname = \"{name}\"\npin = \"{hashed}\"")
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    from agent.attendant.devices import DeviceError, enrol_device
    from agent.cli.broker_config import BrokerConfigError, find_mosquitto_passwd

    try:
        pumps = tuple(int(p) for p in args.pumps.split(","))
    except ValueError as exc:
        raise CliError("--pumps: numbers separated by commas, e.g. 1,2") from exc
    try:
        key = enrol_device(args.etc, args.station, args.name, pumps, find_mosquitto_passwd())
    except (DeviceError, BrokerConfigError) as exc:
        raise CliError(str(exc)) from exc
    listed = ", ".join(str(p) for p in sorted(set(pumps)))
    print(f"# add to /etc/spbu/agent.toml under [attendant.devices]\n{args.name} = [{listed}]\n"
          f"# then reload the broker (systemctl reload mosquitto) and open this link once on the phone:\n"
          f"https://{args.host}:{args.page_port}/?station={args.station}&mqtt={args.port}"
          f"#device={args.name}&key={key}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The station's pages over HTTPS/1.1 until stopped (systemd: spbu-attendant-page): the
    attendant's app at /, the manager's dashboard at /dashboard/ when it is built."""
    from agent.attendant.files import AttendantPageMissing, attendant_dir
    from agent.cli.dashboard_files import DashboardMissing, dashboard_dir
    from agent.cli.errors import stop_on_signals
    from agent.page_server import PageServer

    try:
        root = args.dir or attendant_dir()
        dashboard = args.dashboard_dir
        if dashboard is not None and not (dashboard / "index.html").is_file():
            print(f"no dashboard in {dashboard} (not built or not installed): serving the attendant's page only",
                  file=sys.stderr, flush=True)
            dashboard = None
        elif dashboard is None:
            try:
                dashboard = dashboard_dir()
            except DashboardMissing:
                dashboard = None
        server = PageServer(root, args.cert, args.key, host=args.host, port=args.port,
                            dashboard=dashboard, dashboard_mqtt_port=args.dashboard_mqtt_port)
    except (AttendantPageMissing, OSError, ValueError) as exc:
        raise CliError(f"cannot serve the station's pages (certificate {args.cert}, key {args.key}): {exc}") from exc
    stop = stop_on_signals()
    server.start()
    print(f"attendant page on https://{args.host}:{server.port}/ from {root}", flush=True)
    if dashboard is not None:
        print(f"manager dashboard on https://{args.host}:{server.port}/dashboard/ from {dashboard} "
              f"(MQTT on port {args.dashboard_mqtt_port})", flush=True)
    try:
        stop.wait()
    finally:
        server.close()
    return 0


def add_attendant_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    att = sub.add_parser("attendant", help="the attendants' app: PINs and enrolled phones")
    att_sub = att.add_subparsers(dest="attendant_command", metavar="ACTION", required=True)
    pin = att_sub.add_parser("pin", help="hash an attendant's PIN (read from --pin-file, or typed)")
    pin.add_argument("--number", required=True, help="attendant number, 1-8 digits")
    pin.add_argument("--name", required=True, help="the attendant's name as the page shows it")
    pin.add_argument("--pin-file", type=Path, help="file holding the PIN (default: asked for, or read from stdin)")
    pin.set_defaults(func=cmd_pin)
    dev = att_sub.add_parser("device", help="enrol a phone on the station broker (its own key, its pumps)")
    dev.add_argument("--station", required=True, help="station id, e.g. 34.401.01")
    dev.add_argument("--name", required=True, help="device name, e.g. pulau-1 (lowercase, digits, -)")
    dev.add_argument("--pumps", required=True, help="the pumps it serves, e.g. 1,2")
    dev.add_argument("--etc", type=Path, required=True,
                     help="the broker's config directory (spbu keys broker-config --out)")
    dev.add_argument("--host", required=True, help="the station's address as in its server certificate")
    dev.add_argument("--port", type=int, default=9443, help="the attendants' TLS WebSockets port (MQTT)")
    dev.add_argument("--page-port", type=int, default=9444, help="the port of spbu attendant serve")
    dev.set_defaults(func=cmd_device)
    serve = att_sub.add_parser("serve", help="serve the attendant's page (and the manager's dashboard at /dashboard/) "
                               "over HTTPS (HTTP/1.1) with the station's certificate; MQTT stays on the "
                               "broker's TLS WebSockets")
    serve.add_argument("--cert", type=Path, required=True, help="the station's TLS server certificate")
    serve.add_argument("--key", type=Path, required=True, help="its key")
    serve.add_argument("--dir", type=Path, help="the page's files (default: /opt/spbu/attendant or the checkout)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")
    serve.add_argument("--port", type=int, default=9444)
    serve.add_argument("--dashboard-dir", type=Path,
                       help="the manager's dashboard files (default: /opt/spbu/dashboard or the checkout, if built)")
    serve.add_argument("--dashboard-mqtt-port", type=int, default=9001,
                       help="the dashboard's TLS WebSockets port on the broker (spbu keys broker-config --ws-port)")
    serve.set_defaults(func=cmd_serve)
