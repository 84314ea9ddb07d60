"""`spbu token issue|render` (headquarters) and `spbu scan images` (technicians)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from agent.cli.errors import CliError


def add_token_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = sub.add_parser("token", help="signed QR tokens (docs/qr-token.md)")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = token_sub.add_parser("issue", help="print the signed QR text for a vehicle (headquarters)")
    issue.add_argument("--vehicle-id", type=int, required=True, help="64-bit vehicle id")
    issue.add_argument("--plate", required=True, help='plate number, e.g. "B 1234 XYZ"')
    issue.add_argument("--key", type=Path, required=True, help="headquarters' tokens signing key (PEM)")
    issue.add_argument("--date", type=dt.date.fromisoformat, help="issue date, YYYY-MM-DD (default today, UTC)")
    issue.set_defaults(func=cmd_token_issue)
    render = token_sub.add_parser("render", help="write a QR text as a PNG image")
    render.add_argument("payload", metavar="PAYLOAD", help="the QR text, e.g. from `spbu token issue`")
    render.add_argument("--out", type=Path, required=True, help="PNG file to write")
    render.add_argument("--scale", type=int, default=8, help="pixels per module (default 8)")
    render.set_defaults(func=cmd_token_render)


def add_scan_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    scan = sub.add_parser("scan", help="decode QR codes through the camera pipeline")
    scan_sub = scan.add_subparsers(dest="scan_command", metavar="ACTION", required=True)
    images = scan_sub.add_parser("images", help="decode image files (or folders of them)")
    images.add_argument("paths", metavar="PATH", nargs="+", type=Path)
    images.add_argument("--json", action="store_true", help="one JSON object per file")
    images.set_defaults(func=cmd_scan_images)


def cmd_token_issue(args: argparse.Namespace) -> int:
    from agent.qr.tokens import issue_token
    from agent.trust.signing import load_private_key

    if not args.key.is_file():
        raise CliError(f"no key file {args.key}")
    key = load_private_key(args.key)
    try:
        print(issue_token(args.vehicle_id, args.plate, args.date or dt.datetime.now(dt.UTC).date(), key))
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return 0


def cmd_token_render(args: argparse.Namespace) -> int:
    import segno

    if args.out.suffix.lower() != ".png":
        raise CliError("--out must be a .png file")
    if not 1 <= args.scale <= 64:
        raise CliError("--scale must be 1 to 64")
    try:
        code = segno.make_qr(args.payload, error="m")
    except (ValueError, segno.DataOverflowError) as exc:
        raise CliError(f"cannot encode as a QR code: {exc}") from exc
    code.save(str(args.out), scale=args.scale, border=4)
    print(f"{args.out}: QR version {code.version}, {code.mode} mode, {len(args.payload)} characters")
    return 0


def cmd_scan_images(args: argparse.Namespace) -> int:
    import cv2

    from hal.camera import expand_images
    from hal.qr_decode import QrPipeline

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise CliError(f"no such file or folder: {missing[0]}")
    files = expand_images(args.paths)
    if not files:
        raise CliError("no image files found")
    pipeline = QrPipeline()
    failures = 0
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
        row: dict[str, object] = {"file": str(path)}
        if image is None:
            row.update(ok=False, error="not a readable image")
        else:
            pipeline.last_box = None  # independent photos: no position to carry over
            hit = pipeline.decode(image)
            row.update(ok=True, text=hit.text, attempt=hit.attempt) if hit else row.update(
                ok=False, error="no QR code found")
        failures += not row["ok"]
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{path}: {row['text'] if row['ok'] else 'FAILED ' + str(row['error'])}", flush=True)
    return 1 if failures else 0
