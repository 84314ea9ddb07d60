"""`spbu allowlist …` end to end on real files: keys, registry, delta, verify, lookup, inspect."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.trust.signing import key_id, load_public_key_hex


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert main(["allowlist", "keygen", "--out", str(tmp_path / "keys"), "--root-keys", "3",
                 "--root-threshold", "2"]) == 0
    return tmp_path / "keys"


def registry_csv(path: Path, count: int = 500) -> dict[int, str]:
    rng = random.Random(4)
    rows = {rng.getrandbits(64) or 1: rng.choice(["motorcycle", "private_car"]) for _ in range(count)}
    lines = ["vehicle_id,category,products,status"]
    lines += [f"{vid},{cat},pertalite,active" for vid, cat in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return rows


def test_build_delta_verify_lookup(tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = registry_csv(tmp_path / "reg.csv")
    repo = tmp_path / "rel"
    key = str(keys / "allowlist.key")
    assert main(["allowlist", "build", "--registry", str(tmp_path / "reg.csv"), "--repo", str(repo), "--key", key]) == 0
    gone, kept = list(rows)[:2]
    (tmp_path / "changes.csv").write_text(f"op,vehicle_id,category,products,status\nremove,{gone},,,\n"
                                          f"change,{kept},goods_4w,solar,suspended\n"
                                          "add,77,motorcycle,pertalite,active\n")
    assert main(["allowlist", "delta", "--changes", str(tmp_path / "changes.csv"), "--repo", str(repo),
                 "--key", key]) == 0
    capsys.readouterr()
    assert main(["allowlist", "verify", "--root", str(keys / "root.json"), "--repo", str(repo)]) == 0
    assert "OK: allow-list version 2, 500 entries" in capsys.readouterr().out
    store = str(repo / "store-2.bin")
    assert main(["allowlist", "lookup", "--store", store, str(kept)]) == 0
    assert capsys.readouterr().out.strip() == f"{kept}: goods_4w solar suspended (version 2)"
    assert main(["allowlist", "lookup", "--store", store, str(gone)]) == 1
    assert "not listed" in capsys.readouterr().out
    assert main(["allowlist", "lookup", "--store", store, "0x4d"]) == 0
    assert capsys.readouterr().out.startswith("77: motorcycle pertalite active")
    assert main(["allowlist", "inspect", str(repo / "delta-1-2.bin")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["from_version"], info["version"], info["count"]) == ("delta", 1, 2, 3)
    assert main(["allowlist", "inspect", str(repo / "manifest-2.json")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == 2 and info["deltas"][0]["from"] == 1


@pytest.mark.parametrize(("tamper", "check"), [
    ("wrong_store", "mix-and-match"),
    ("short_store", "truncated"),
    ("wrong_key", "unknown key"),
    ("edited", "bad signature"),
])
def test_verify_names_the_failed_check(tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str],
                                       tamper: str, check: str) -> None:
    registry_csv(tmp_path / "reg.csv")
    repo = tmp_path / "rel"
    key = "policy.key" if tamper == "wrong_key" else "allowlist.key"
    for _ in range(2):
        assert main(["allowlist", "build", "--registry", str(tmp_path / "reg.csv"), "--repo", str(repo),
                     "--key", str(keys / key)]) == 0
    manifest, store = repo / "manifest-2.json", repo / "store-2.bin"
    if tamper == "wrong_store":
        store = repo / "store-1.bin"
    elif tamper == "short_store":
        store.write_bytes(store.read_bytes()[:-1])
    elif tamper == "edited":
        manifest.write_text(manifest.read_text().replace('"version":2', '"version":3'))
    capsys.readouterr()
    code = main(["allowlist", "verify", "--root", str(keys / "root.json"), "--manifest", str(manifest),
                 "--store", str(store)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith(f"spbu: error: verify failed: {check}") and "\n" not in err


@pytest.mark.parametrize("argv", [
    ["allowlist", "build", "--registry", "missing.csv", "--repo", "r", "--key", "k"],
    ["allowlist", "lookup", "--store", "missing.bin", "12"],
    ["allowlist", "lookup", "--store", "missing.bin", "twelve"],
    ["allowlist", "keygen", "--out", "k", "--root-keys", "2", "--root-threshold", "3"],
])
def test_bad_input_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith("spbu: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_bad_registry_row_names_the_line(tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "reg.csv").write_text("vehicle_id,category,products,status\n5,motorcycle,pertalite,active\n"
                                      "6,tractor,solar,active\n")
    assert main(["allowlist", "build", "--registry", str(tmp_path / "reg.csv"), "--repo", str(tmp_path / "r"),
                 "--key", str(keys / "allowlist.key")]) != 0
    assert "tractor" in capsys.readouterr().err


def test_provision_with_the_root_of_trust(tmp_path: Path, keys: Path) -> None:
    from agent.cli.provision import ProvisionError, provision
    from agent.config import load_config
    from agent.docstore import DocumentStore

    etc = tmp_path / "etc"
    checks = provision("34.401.07", "WIB", etc, tmp_path / "data", [keys / "root.json"], "uart", "/dev/none",
                       ["1:pertalite:/dev/none-s"])
    config = load_config(etc / "agent.toml")
    assert config.trust_root == etc / "root.json" and config.trusted_keys == {}
    assert (etc / "root.json").read_bytes() == (keys / "root.json").read_bytes()
    assert any(c.item == "root of trust" and "root.json" in c.detail for c in checks)
    docs = DocumentStore(tmp_path / "data", config.trusted_keys, config.trust_root)
    allowlist_pub = load_public_key_hex((keys / "allowlist.pub").read_text().strip())
    assert list(docs.trust.keyring("allowlist")) == [key_id(allowlist_pub)]
    forged = tmp_path / "forged.json"
    forged.write_text((keys / "root.json").read_text().replace('"version":1', '"version":7'))
    with pytest.raises(ProvisionError, match="not a valid root"):
        provision("34.401.07", "WIB", etc, tmp_path / "data", [forged], "uart", "/dev/none",
                  ["1:pertalite:/dev/none-s"], force=True)
