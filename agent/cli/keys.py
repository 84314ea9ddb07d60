"""`spbu keys ca | station-cert | server-cert | broker-config` and the collector side of
`spbu sim hq`: the sync and security commands, kept out of the parser hub (agent/cli/main.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.errors import CliError, stop_on_signals

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def cmd_keys_ca(args: argparse.Namespace) -> int:
    from hq.pki import PkiError, make_ca

    try:
        issued = make_ca(args.out, args.name, args.days, args.force)
    except PkiError as exc:
        raise CliError(str(exc)) from exc
    print(f"CA key  {issued.key}\nCA cert {issued.cert}")
    return 0


def cmd_keys_cert(args: argparse.Namespace) -> int:
    from hq.pki import PkiError, issue

    try:
        if args.keys_command == "server-cert":
            issued = issue(args.ca, args.out, args.host[0], server_names=tuple(args.host), days=args.days,
                           force=args.force)
        else:
            if (args.station is None) == (args.service is None):
                raise CliError("give exactly one of --station ID or --service NAME")
            issued = issue(args.ca, args.out, args.station or args.service, csr_path=args.csr, days=args.days,
                           force=args.force)
    except PkiError as exc:
        raise CliError(str(exc)) from exc
    print((f"key  {issued.key}\n" if issued.key else "") + f"cert {issued.cert}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from hq.pki import PkiError, revoke, write_crl

    try:
        crl = revoke(args.ca, args.cert) if args.cert else write_crl(args.ca)
    except PkiError as exc:
        raise CliError(str(exc)) from exc
    print(f"crl {crl}: copy it to headquarters' broker (crlfile) and reload it")
    return 0


def cmd_keys_broker_config(args: argparse.Namespace) -> int:
    import secrets

    from agent.cli.broker_config import (
        BrokerConfigError,
        StationBroker,
        write_agent_login,
        write_password_file,
        write_station_broker,
    )

    cfg = StationBroker(args.station, args.hq_host, args.hq_port, args.ca, args.cert, args.key,
                        ws_interface=args.ws_interface, ws_port=args.ws_port,
                        ws_certfile=args.ws_cert, ws_keyfile=args.ws_key,
                        attendant_certfile=args.attendant_cert, attendant_keyfile=args.attendant_key)
    if (args.attendant_cert is None) != (args.attendant_key is None):
        raise CliError("give both --attendant-cert and --attendant-key, or neither")
    try:
        for path in (args.ca, args.cert, args.key, args.ws_cert, args.ws_key):
            if not path.is_file():
                raise CliError(f"{path}: no such file")
        conf = write_station_broker(cfg, args.out)
        if args.dashboard_password_file is not None:
            password = args.dashboard_password_file.read_text().strip()
            where = str(args.dashboard_password_file)
        else:  # shown once, never stored in clear (the broker keeps only its hash)
            password = secrets.token_urlsafe(18)
            where = f"{password} (new: give it to the manager now, it is not stored)"
        write_password_file(args.out / "dashboard.passwd", {cfg.dashboard_user: password})
        agent_secret = write_agent_login(args.out, cfg.agent_user, args.agent_password_file)
    except BrokerConfigError as exc:
        raise CliError(str(exc)) from exc
    print(f"station broker {conf}\nACLs {args.out / 'station-agent.acl'}, {args.out / 'station-dashboard.acl'}\n"
          f"dashboard user {cfg.dashboard_user}, password {where}\n"
          f"dashboard page https://<this station>:9444/dashboard/ (spbu-attendant-page.service; its MQTT is "
          f"on port {cfg.ws_port})\n"
          f"agent login {cfg.agent_user}, password in {agent_secret} (mode 600: give it to the agent's user);"
          f" add to agent.toml [mqtt]: username = \"{cfg.agent_user}\", password_file = \"{agent_secret}\"")
    return 0


def run_collector(args: argparse.Namespace, hq_line: str, ack_key: Ed25519PrivateKey | None = None) -> int:
    """ack_key: signs acknowledgements (else --key). Records are stored only when signed by
    a station whose certificate is in --station-certs (checked against --ca when given)."""
    import psycopg

    from agent.trust.signing import load_private_key
    from hq.collector import Collector
    from hq.tx_verify import StationKeys, TxSignatureError

    if ack_key is None and args.key is None:
        raise CliError("the collector signs acknowledgements: give --key (the trust root's acks key)")
    if args.station_certs is None:
        raise CliError("give --station-certs DIR (the stations' certificates, to verify transaction signatures)")
    try:
        keys = StationKeys.from_directory(args.station_certs, args.ca)
    except (OSError, ValueError, TxSignatureError) as exc:
        raise CliError(f"{args.station_certs}: {exc}") from exc
    try:
        collector = Collector(args.host, args.port, args.db, name=args.name,
                              on_alert=lambda a: print(f"ALERT {json.dumps(a.as_dict())}", flush=True),
                              ack_key=ack_key or load_private_key(args.key), verifier=keys.verify)
    except psycopg.Error as exc:
        raise CliError(f"{args.db}: {exc}".replace("\n", " ")) from exc
    try:
        collector.start()
    except RuntimeError as exc:
        raise CliError(str(exc)) from exc
    print(f"{hq_line}collector {collector.name} on {args.host}:{args.port}, shared subscription "
          f"$share/{collector.group}/spbu/v1/+/tx, PostgreSQL {args.db}", flush=True)
    stop = stop_on_signals()
    try:
        while not stop.wait(5.0):
            print(f"{collector.name}: received {collector.received}, stored {collector.stored}, "
                  f"duplicates {collector.duplicates}, refused {collector.rejected}", flush=True)
    finally:
        collector.close()
    return 0


def cmd_keys_manager(args: argparse.Namespace) -> int:
    """The manager's command key: derived from the signing passphrase, as the browser does.
    The passphrase is typed by the manager and never sent to the broker; it must not be the
    dashboard's broker password (--broker-password-file checks)."""
    from agent.trust.manager_keys import manager_key
    from agent.trust.signing import key_id, public_key_hex

    try:
        password = args.password_file.read_text().strip()
        login = args.broker_password_file.read_text().strip() if args.broker_password_file else None
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    if login is not None and login == password:
        raise CliError("the signing passphrase must not be the broker password (that one crosses the LAN)")
    try:
        public = manager_key(args.station, args.user, password).public_key()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"# add to /etc/spbu/agent.toml: the dashboard user {args.user} may lock, unlock and acknowledge\n"
          f"[dashboard.manager_keys]\n\"{key_id(public)}\" = \"{public_key_hex(public)}\"")
    return 0


def add_key_commands(keys_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    manager = keys_sub.add_parser("manager", help="the station manager's command key, derived from the manager's "
                                  "signing passphrase (prints the config lines that make the station trust it)")
    manager.add_argument("--station", required=True, help="station id, e.g. 34.401.01")
    manager.add_argument("--user", default="dashboard", help="the dashboard's user name on the broker")
    manager.add_argument("--passphrase-file", "--password-file", dest="password_file", type=Path, required=True,
                         help="file holding the manager's signing passphrase (not the broker password)")
    manager.add_argument("--broker-password-file", type=Path,
                         help="the dashboard's broker password: refused if the passphrase is the same")
    manager.set_defaults(func=cmd_keys_manager)
    ca = keys_sub.add_parser("ca", help="make a test certificate authority for the MQTT links (EC P-256)")
    ca.add_argument("--out", type=Path, required=True, help="directory for ca.key and ca.crt")
    ca.add_argument("--name", default="SPBU test CA", help="the CA's common name")
    ca.add_argument("--days", type=int, default=3650)
    ca.add_argument("--force", action="store_true", help="replace an existing CA key")
    ca.set_defaults(func=cmd_keys_ca)
    cert = keys_sub.add_parser("station-cert", help="a client certificate for a station (CN = station id) or a "
                               "service such as hq-collector, signed by the CA")
    cert.add_argument("--ca", type=Path, required=True, help="directory with ca.key and ca.crt")
    cert.add_argument("--station", help="station id, e.g. 34.401.01")
    cert.add_argument("--service", help="service name instead of a station, e.g. hq-collector")
    cert.add_argument("--csr", type=Path, help="sign this request (spbu provision made it) instead of a new key")
    cert.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.crt")
    cert.add_argument("--days", type=int, default=825)
    cert.add_argument("--force", action="store_true", help="replace existing files")
    cert.set_defaults(func=cmd_keys_cert)
    server = keys_sub.add_parser("server-cert", help="a broker's TLS server certificate, signed by the CA")
    server.add_argument("--ca", type=Path, required=True, help="directory with ca.key and ca.crt")
    server.add_argument("--host", action="append", required=True, help="DNS name or IP address; repeatable")
    server.add_argument("--out", type=Path, required=True)
    server.add_argument("--days", type=int, default=825)
    server.add_argument("--force", action="store_true", help="replace existing files")
    server.set_defaults(func=cmd_keys_cert)
    revoke = keys_sub.add_parser("revoke", help="add a certificate to the CA's revocation list (ca/crl.pem, which "
                                 "headquarters' broker checks); without --cert, re-issue the list before it expires")
    revoke.add_argument("--ca", type=Path, required=True, help="directory with ca.key and ca.crt")
    revoke.add_argument("--cert", type=Path, help="the certificate to revoke")
    revoke.set_defaults(func=cmd_keys_revoke)
    _add_broker_config(keys_sub)


def _add_broker_config(keys_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bconf = keys_sub.add_parser("broker-config", help="the station broker's mosquitto config and ACLs "
                                "(loopback for the agent, WebSockets for the dashboard, TLS bridge to headquarters)")
    bconf.add_argument("--station", required=True, help="station id, e.g. 34.401.01")
    bconf.add_argument("--hq-host", required=True, help="headquarters' broker host name (as in its certificate)")
    bconf.add_argument("--hq-port", type=int, default=8883)
    bconf.add_argument("--ca", type=Path, required=True, help="the CA certificate that signed headquarters' broker")
    bconf.add_argument("--cert", type=Path, required=True, help="this station's client certificate")
    bconf.add_argument("--key", type=Path, required=True, help="this station's key (spbu provision made it)")
    bconf.add_argument("--ws-interface", default="eth0", help="network interface for the dashboard's WebSockets")
    bconf.add_argument("--ws-port", type=int, default=9001)
    bconf.add_argument("--ws-cert", type=Path, required=True, help="the station's TLS server certificate (spbu keys "
                       "server-cert --host <the station's LAN name or address>) for the dashboard's WebSockets")
    bconf.add_argument("--ws-key", type=Path, required=True, help="its key")
    bconf.add_argument("--dashboard-password-file", type=Path, help="the dashboard's password (default: a new one)")
    bconf.add_argument("--attendant-cert", type=Path, help="the station's TLS server certificate (spbu keys "
                       "server-cert): turns on the attendants' TLS WebSockets listener on port 9443")
    bconf.add_argument("--attendant-key", type=Path, help="its key")
    bconf.add_argument("--out", type=Path, required=True, help="directory for spbu.conf, ACLs and password file")
    bconf.add_argument("--agent-password-file", type=Path,
                       help="the agent's broker password (`spbu provision` made /etc/spbu/agent.password); "
                            "a new one beside the config if omitted")
    bconf.set_defaults(func=cmd_keys_broker_config)
