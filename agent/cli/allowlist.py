"""`spbu allowlist keygen | build | delta | verify | inspect | lookup | publish`."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from agent.cli.errors import CliError
from agent.trust.root import ALL_ROLES


def _fail(message: str) -> Exception:
    return CliError(message)


def _keys(paths: list[Path]) -> list[Any]:
    from agent.trust.signing import SignatureError, load_private_key

    if not paths:
        raise _fail("at least one --key (the allowlist role's private key) is needed")
    try:
        return [load_private_key(p) for p in paths]
    except (OSError, ValueError, SignatureError) as exc:
        raise _fail(f"cannot load signing key: {exc}") from exc


def _cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.trust import root as trust
    from agent.trust.signing import key_id, public_key_hex, save_private_key

    if not 1 <= args.root_threshold <= args.root_keys:
        raise _fail("--root-threshold must be between 1 and --root-keys")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    names = [f"root-{i + 1}" for i in range(args.root_keys)] + [r for r in ALL_ROLES if r != "root"]
    if not args.force and any((out / f"{n}.key").exists() for n in names):
        raise _fail(f"keys exist in {out}; use --force to replace them")
    keys = {n: Ed25519PrivateKey.generate() for n in names}
    for name, key in keys.items():
        save_private_key(key, out / f"{name}.key")
        (out / f"{name}.pub").write_text(public_key_hex(key.public_key()) + "\n")
    root_keys = [keys[n] for n in names if n.startswith("root-")]
    role_keys = {"root": [k.public_key() for k in root_keys],
                 **{r: [keys[r].public_key()] for r in ALL_ROLES if r != "root"}}
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=args.expires_days)
    body = trust.root_body(1, expires, role_keys, {"root": args.root_threshold})
    (out / "root.json").write_bytes(trust.sign(body, root_keys[:args.root_threshold]))
    for name in names:
        print(f"{name:10} {key_id(keys[name].public_key())}  {out / (name + '.key')}")
    print(f"root.json  version 1, root threshold {args.root_threshold} of {args.root_keys}, "
          f"expires {expires.date()}: {out / 'root.json'}")
    print("keep the root-*.key files offline; stations are provisioned with root.json")
    return 0


def _release(args: argparse.Namespace, table: Any) -> int:
    from hq.releases import Releases

    releases = Releases(args.repo)
    version = releases.release(table, _keys(args.key), dt.timedelta(days=args.days), args.chunk_size)
    size = releases.store_path(version).stat().st_size
    delta = releases.delta_path(version)
    print(f"version {version}: {len(table)} entries, store {size} bytes "
          f"({size / max(1, len(table)):.2f} B/entry)"
          + (f", delta from {version - 1}: {delta.stat().st_size} bytes" if delta.exists() else "")
          + f"; manifest {releases.manifest_path(version)}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from hq.releases import ReleaseError, read_registry

    try:
        table = read_registry(args.registry)
    except (OSError, ReleaseError) as exc:
        raise _fail(str(exc)) from exc
    return _release(args, table)


def _cmd_delta(args: argparse.Namespace) -> int:
    from hq.releases import ReleaseError, Releases, apply_changes

    releases = Releases(args.repo)
    latest = releases.latest()
    if not latest:
        raise _fail(f"{args.repo} has no release yet; run spbu allowlist build first")
    try:
        table = apply_changes(releases.table(latest), args.changes)
    except (OSError, ReleaseError) as exc:
        raise _fail(str(exc)) from exc
    return _release(args, table)


def _manifest_and_store(args: argparse.Namespace) -> tuple[bytes, Path | None]:
    if args.repo is not None:
        from hq.releases import Releases

        releases = Releases(args.repo)
        version = releases.latest()
        if not version:
            raise _fail(f"{args.repo} holds no release")
        return releases.manifest_path(version).read_bytes(), releases.store_path(version)
    if args.station is not None:
        current = args.station / "current"
        return (current / "manifest.json").read_bytes(), current / "store.bin"
    if args.manifest is None:
        raise _fail("give --repo, --station or --manifest")
    return args.manifest.read_bytes(), args.store


def _cmd_verify(args: argparse.Namespace) -> int:
    from agent.allowlist import build
    from agent.allowlist import manifest as manifests
    from agent.allowlist.layers import Layers
    from agent.allowlist.store import StoreError
    from agent.allowlist.verify import verify_layered
    from agent.trust.root import TrustError, TrustStore

    raw, store = _manifest_and_store(args)
    try:
        trust = TrustStore.from_root_file(args.root)
        manifest = manifests.parse(trust.verify(manifests.ROLE, raw), raw)
        if dt.datetime.now(dt.UTC) >= manifest.expires:
            raise TrustError("expired", f"manifest expired {manifest.expires.isoformat()}")
        layers = Layers.read(store.parent) if store is not None else None
        if store is not None and layers is not None:
            verify_layered(store.parent, layers, manifest)  # the station's own boot check
        elif store is not None:
            data = store.read_bytes()
            if len(data) != manifest.snapshot.length:
                raise TrustError("truncated" if len(data) < manifest.snapshot.length else "endless data",
                                 f"store is {len(data)} bytes, manifest says {manifest.snapshot.length}")
            if hashlib.sha256(data).hexdigest() != manifest.snapshot.sha256:
                raise TrustError("mix-and-match", "store content does not match the manifest digest")
            table, version = build.decode(data)
            if version != manifest.version or len(table) != manifest.count:
                raise TrustError("mix-and-match", "store header disagrees with the manifest")
    except TrustError as exc:
        raise _fail(f"verify failed: {exc}") from exc
    except StoreError as exc:
        raise _fail(f"verify failed: malformed store: {exc}") from exc
    print(f"OK: allow-list version {manifest.version}, {manifest.count} entries, expires "
          f"{manifest.expires.isoformat()}, signed by {trust.threshold(manifests.ROLE)} of the allowlist role"
          + (f"; store {store} matches" if store is not None else ""))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from agent.allowlist.store import MAGIC, Header, StoreError

    data = args.file.read_bytes()
    if data[:8] == MAGIC:
        try:
            header = Header.parse(data[:65548], len(data))
        except StoreError as exc:
            raise _fail(f"{args.file}: {exc}") from exc
        raw = json.loads(data[12:12 + int.from_bytes(data[8:12], "little")])
        info: dict[str, Any] = {
            "kind": raw.get("kind", "store"), "version": header.version, "count": header.layout.count,
            "bytes": len(data), "bytes_per_entry": round(len(data) / max(1, header.layout.count), 3),
            "bucket_bits": header.layout.bucket_bits, "entry_bits": header.layout.width,
            "classes": raw.get("delta_classes", raw["classes"]), "sha256": hashlib.sha256(data).hexdigest()}
        if "from_version" in raw:
            info["from_version"] = raw["from_version"]
    else:
        try:
            info = _manifest_info(json.loads(data))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _fail(f"{args.file}: neither a store, a delta nor a signed manifest") from exc
    print(json.dumps(info, indent=2))
    return 0


def _manifest_info(envelope: Any) -> dict[str, Any]:
    signed = envelope["signed"]
    info = {k: v for k, v in signed.items() if k not in ("snapshot", "deltas")}
    if "snapshot" in signed:
        info["snapshot"] = {"length": signed["snapshot"]["length"], "chunks": len(signed["snapshot"]["chunks"])}
        info["deltas"] = [{"from": d["from"], "to": d["to"], "length": d["length"]} for d in signed["deltas"]]
    info["signatures"] = [s.get("keyid") for s in envelope.get("signatures", [])]
    return info


def _cmd_lookup(args: argparse.Namespace) -> int:
    from agent.allowlist.store import AllowListStore, StoreError

    path: Path = args.store
    if path.is_dir():
        path = path / "current" / "store.bin"
    try:
        vehicle_id = int(args.vehicle_id, 0)
    except ValueError as exc:
        raise _fail(f"invalid vehicle id {args.vehicle_id!r}: not a number") from exc
    if not 0 <= vehicle_id < 1 << 64:
        raise _fail(f"invalid vehicle id {args.vehicle_id!r}: ids are 0 .. 2^64-1")
    try:
        from agent.allowlist.layers import LayeredStore, Layers

        layers = Layers.read(path.parent)
        store = LayeredStore.open(path.parent, layers) if layers else AllowListStore(path)
        try:
            entry = store.lookup_class(vehicle_id)
            version = store.version
        finally:
            store.close()
    except StoreError as exc:
        raise _fail(f"{path}: {exc}") from exc
    if entry is None:
        print(f"{vehicle_id}: not listed (version {version})")
        return 1
    category, products, status = entry
    from agent.domain import PRODUCTS

    names = "+".join(p for p, bit in PRODUCTS.items() if products & bit) or "none"
    print(f"{vehicle_id}: {category} {names} {status} (version {version})")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from hq.releases import Publisher, ReleaseError, Releases

    releases = Releases(args.repo)
    version = args.version or releases.latest()
    if not version or not releases.manifest_path(version).exists():
        raise _fail(f"{args.repo} has no release {version or ''}".strip())
    roots = [p.read_bytes() for p in args.root]
    try:
        publisher = Publisher(args.host, args.port)
        try:
            sent = publisher.publish(releases.manifest_path(version).read_bytes(), releases.blobs(version), roots)
        finally:
            publisher.close()
    except ReleaseError as exc:
        raise _fail(str(exc)) from exc
    print(f"published allow-list version {version} to {args.host}:{args.port}: {sent} chunks, "
          f"{len(roots)} root(s), manifest (all retained)")
    return 0


def add_allowlist_commands(sub: Any) -> None:
    from agent.allowlist.manifest import DEFAULT_CHUNK

    al = sub.add_parser("allowlist", help="the signed vehicle allow-list: keys, releases, checks, publishing")
    al_sub = al.add_subparsers(dest="allowlist_command", metavar="ACTION", required=True)

    keygen = al_sub.add_parser("keygen", help="offline root keys, one key per role, and a signed root.json")
    keygen.add_argument("--out", type=Path, required=True, help="directory for the keys and root.json")
    keygen.add_argument("--root-keys", type=int, default=3, help="offline root keys (default 3)")
    keygen.add_argument("--root-threshold", type=int, default=2, help="root signatures required (default 2)")
    keygen.add_argument("--expires-days", type=int, default=365)
    keygen.add_argument("--force", action="store_true", help="replace existing keys")
    keygen.set_defaults(func=_cmd_keygen)

    def release_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--repo", type=Path, required=True, help="release directory (versions, deltas, manifests)")
        p.add_argument("--key", type=Path, action="append", default=[],
                       help="allowlist role private key (PEM); repeat to meet a threshold")
        p.add_argument("--days", type=float, default=14, help="validity of the manifest in days (default 14)")
        p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="bytes per MQTT chunk")

    build = al_sub.add_parser("build", help="sign the next version from a registry CSV "
                              "(vehicle_id,category,products,status)")
    build.add_argument("--registry", type=Path, required=True)
    release_args(build)
    build.set_defaults(func=_cmd_build)

    delta = al_sub.add_parser("delta", help="sign the next version from a changes CSV "
                              "(op,vehicle_id,category,products,status; op add, change or remove)")
    delta.add_argument("--changes", type=Path, required=True)
    release_args(delta)
    delta.set_defaults(func=_cmd_delta)

    verify = al_sub.add_parser("verify", help="check a manifest (and its store) against a root; "
                               "exits non-zero naming the failed check")
    verify.add_argument("--root", type=Path, required=True, help="root.json")
    verify.add_argument("--repo", type=Path, help="a release directory: its latest version")
    verify.add_argument("--station", type=Path, help="a station's allowlist directory: its current version")
    verify.add_argument("--manifest", type=Path)
    verify.add_argument("--store", type=Path)
    verify.set_defaults(func=_cmd_verify)

    inspect = al_sub.add_parser("inspect", help="describe a store, delta or manifest file")
    inspect.add_argument("file", type=Path)
    inspect.set_defaults(func=_cmd_inspect)

    lookup = al_sub.add_parser("lookup", help="print a vehicle's entry, or say it is not listed (exit 1)")
    lookup.add_argument("--store", type=Path, required=True, help="store file, or a station's allowlist directory")
    lookup.add_argument("vehicle_id", help="64-bit vehicle id (decimal or 0x hex)")
    lookup.set_defaults(func=_cmd_lookup)

    publish = al_sub.add_parser("publish", help="put a release on the broker: chunks, roots, then the manifest")
    publish.add_argument("--repo", type=Path, required=True)
    publish.add_argument("--version", type=int, help="default: the latest")
    publish.add_argument("--root", type=Path, action="append", default=[], help="root version file to (re)publish")
    publish.add_argument("--host", default="127.0.0.1")
    publish.add_argument("--port", type=int, default=1883)
    publish.set_defaults(func=_cmd_publish)
