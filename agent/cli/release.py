"""`spbu release build | sign | publish | status | advance | halt | usb` (headquarters).

    spbu release build --out R --version 0.2.0 --sequence 2 --wheels dist/bundle \\
        [--deploy deploy] [--firmware hal] --firmware-version 2 [--percent 1] [--migrations m.json]
    spbu release sign --out R --key keys/software.key
    spbu release publish --out R --host hq-broker --port 8883
    spbu release status --out R --fleet stations.txt --host ... [--wait 5]
    spbu release advance --out R --fleet stations.txt --key ... --host ...   # next cohort, if healthy
    spbu release halt --out R --key ... --host ...
    spbu release usb --out R --stick /media/usb/spbu-release
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _fail(message: str) -> Exception:
    from agent.cli.errors import CliError

    return CliError(message)


def _keys(paths: list[Path]) -> list[Any]:
    from agent.trust.signing import SignatureError, load_private_key

    if not paths:
        raise _fail("at least one --key (the software role's private key) is needed")
    try:
        return [load_private_key(p) for p in paths]
    except (OSError, ValueError, SignatureError) as exc:
        raise _fail(f"cannot load signing key: {exc}") from exc


def _firmware(source: Path | None) -> dict[str, Path]:
    """The board's files from a checkout's hal/ (simulators/flash.FIRMWARE_FILES), non-empty."""
    if source is None:
        return {}
    from simulators.flash import FIRMWARE_FILES

    base = source.parent if source.name == "hal" else source
    found = {rel: base / rel for rel in FIRMWARE_FILES if (base / rel).is_file() and (base / rel).stat().st_size}
    if not found:
        raise _fail(f"no firmware files under {source}")
    return found


def _cmd_build(args: argparse.Namespace) -> int:
    from hq import software_release as sr

    wheels = sorted(args.wheels.glob("*.whl")) if args.wheels.is_dir() else []
    if not wheels:
        raise _fail(f"no wheels in {args.wheels} (make bundle puts them in dist/bundle)")
    migrations = None
    if args.migrations is not None:
        try:
            migrations = json.loads(args.migrations.read_text())
        except (OSError, ValueError) as exc:
            raise _fail(f"cannot read migrations {args.migrations}: {exc}") from exc
    try:
        body = sr.build(args.out, args.version, args.sequence, wheels, args.deploy, _firmware(args.firmware),
                        args.firmware_version, args.min_agent, migrations, percent=args.percent)
    except sr.ReleaseBuildError as exc:
        raise _fail(str(exc)) from exc
    size = sum(f["length"] for f in body["files"])
    print(f"release {args.version} (sequence {args.sequence}): {len(body['files'])} files, {size} bytes, "
          f"cohort {args.percent} %: {args.out / 'body.json'} (sign it next)")
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from hq import software_release as sr

    if not (args.out / "body.json").exists():
        raise _fail(f"{args.out} has no body.json (spbu release build first)")
    sr.sign(args.out, _keys(args.key))
    print(f"signed: {args.out / 'manifest.json'}")
    return 0


def _publisher(args: argparse.Namespace) -> Any:
    from hq import software_release as sr

    try:
        return sr.ReleasePublisher(args.host, args.port)
    except sr.ReleaseBuildError as exc:
        raise _fail(str(exc)) from exc


def _cmd_publish(args: argparse.Namespace) -> int:
    from hq import software_release as sr

    manifest = args.out / "manifest.json"
    if not manifest.exists():
        raise _fail(f"{args.out} is not signed yet (spbu release sign)")
    publisher = _publisher(args)
    try:
        sent = publisher.publish(manifest.read_bytes(), sr.chunks(args.out))
    finally:
        publisher.close()
    print(f"published {args.out.name}: manifest and {sent} chunks")
    return 0


def _tracker(args: argparse.Namespace) -> tuple[Any, list[str]]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent import topics
    from hq.rollout import RolloutTracker

    body = json.loads((args.out / "body.json").read_text())
    tracker = RolloutTracker(body["version"], int(body["rollout"]["percent"]), threshold=args.threshold)
    fleet = [line.strip() for line in args.fleet.read_text().splitlines() if line.strip()]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spbu-hq-release-status", protocol=mqtt.MQTTv311)
    client.on_message = lambda c, u, m: tracker.observe(m.topic, bytes(m.payload))
    try:
        client.connect(args.host, args.port, keepalive=30)
    except OSError as exc:
        raise _fail(f"cannot reach the broker at {args.host}:{args.port}: {exc}") from exc
    client.subscribe(topics.UPDATE_ALL, qos=1)
    client.loop_start()
    time.sleep(args.wait)  # the retained reports of every station arrive at once
    client.loop_stop()
    client.disconnect()
    return tracker, fleet


def _cmd_status(args: argparse.Namespace) -> int:
    tracker, fleet = _tracker(args)
    print(json.dumps(tracker.status(fleet), indent=1))
    return 0


def _cmd_advance(args: argparse.Namespace) -> int:
    from agent import topics
    from hq import software_release as sr
    from hq.rollout import RolloutHalted

    tracker, fleet = _tracker(args)
    try:
        nxt = tracker.next_percent(fleet)
    except RolloutHalted as exc:
        raise _fail(f"not advancing: {exc} (spbu release halt stops it)") from exc
    if nxt is None:
        print(json.dumps({"advanced": False, **tracker.status(fleet)}, indent=1))
        return 0
    raw = sr.reroll(args.out, _keys(args.key), percent=nxt)
    publisher = _publisher(args)
    try:
        publisher.put(topics.SOFTWARE_MANIFEST, raw)
    finally:
        publisher.close()
    print(f"release {tracker.version}: cohort {tracker.percent} % -> {nxt} %")
    return 0


def _cmd_halt(args: argparse.Namespace) -> int:
    from agent import topics
    from hq import software_release as sr

    raw = sr.reroll(args.out, _keys(args.key), halted=True)
    publisher = _publisher(args)
    try:
        publisher.put(topics.SOFTWARE_MANIFEST, raw)
    finally:
        publisher.close()
    print(f"{args.out.name}: halted (stations that have not switched yet will not)")
    return 0


def _cmd_usb(args: argparse.Namespace) -> int:
    from hq import software_release as sr

    try:
        sr.export_usb(args.out, args.stick)
    except sr.ReleaseBuildError as exc:
        raise _fail(str(exc)) from exc
    print(f"release on {args.stick}: mount it at the station's [update] usb_dir")
    return 0


def add_release_commands(sub: Any) -> None:
    rel = sub.add_parser("release", help="software releases for the fleet (headquarters)")
    rel_sub = rel.add_subparsers(dest="release_command", metavar="ACTION", required=True)

    def out(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, required=True, help="the release directory")

    def broker(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=1883)

    def keys(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key", type=Path, action="append", default=[],
                       help="software role private key (PEM); repeat to meet a threshold")

    def fleet(p: argparse.ArgumentParser) -> None:
        p.add_argument("--fleet", type=Path, required=True, help="station ids, one a line")
        p.add_argument("--threshold", type=float, default=0.05, help="failed share that stops the rollout")
        p.add_argument("--wait", type=float, default=3.0, help="seconds to collect station reports")

    build = rel_sub.add_parser("build", help="lay out a release and its unsigned manifest")
    out(build)
    build.add_argument("--version", required=True, help="e.g. 0.2.0 (must match the agent wheel)")
    build.add_argument("--sequence", type=int, required=True, help="only goes forward; the stations' floor")
    build.add_argument("--wheels", type=Path, required=True, help="directory of wheels (make bundle)")
    build.add_argument("--deploy", type=Path, help="deploy files to carry (e.g. deploy/)")
    build.add_argument("--firmware", type=Path, help="hal/ of the checkout whose relay-board firmware to carry")
    build.add_argument("--firmware-version", type=int, default=0)
    build.add_argument("--min-agent", default="0.1.0", help="oldest agent that may install it")
    build.add_argument("--percent", type=int, default=1, choices=(1, 10, 50, 100), help="first cohort")
    build.add_argument("--migrations", type=Path, help="JSON {config: [...], journal: {up, down}}")
    build.set_defaults(func=_cmd_build)
    sign = rel_sub.add_parser("sign", help="sign the manifest with the software role's key(s)")
    out(sign)
    keys(sign)
    sign.set_defaults(func=_cmd_sign)
    publish = rel_sub.add_parser("publish", help="put the chunks and the manifest on the broker (retained)")
    out(publish)
    broker(publish)
    publish.set_defaults(func=_cmd_publish)
    status = rel_sub.add_parser("status", help="installed / failed / pending in the current cohort")
    for add in (out, broker, fleet):
        add(status)
    status.set_defaults(func=_cmd_status)
    advance = rel_sub.add_parser("advance", help="widen the cohort if its failures stay under the threshold")
    for add in (out, broker, fleet, keys):
        add(advance)
    advance.set_defaults(func=_cmd_advance)
    halt = rel_sub.add_parser("halt", help="stop the rollout: no further station switches")
    for add in (out, broker, keys):
        add(halt)
    halt.set_defaults(func=_cmd_halt)
    usb = rel_sub.add_parser("usb", help="copy a signed release to a USB stick for offline stations")
    out(usb)
    usb.add_argument("--stick", type=Path, required=True)
    usb.set_defaults(func=_cmd_usb)
