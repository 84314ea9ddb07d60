"""`spbu token render` and `spbu scan images`: a rendered token decodes back through the
camera pipeline, simulator frames decode, and bad input gets one clear error line."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import cv2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.qr.tokens import issue_token
from simulators.camera import Scene, render

SPBU = [sys.executable, "-m", "agent"]
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPBU, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_render_then_scan_images_json(tmp_path: Path) -> None:
    token = issue_token(31337, "DK 4321 AB", dt.date(2026, 11, 23), Ed25519PrivateKey.generate())
    png = tmp_path / "token.png"
    rendered = run("token", "render", token, "--out", str(png))
    assert rendered.returncode == 0, rendered.stderr
    assert "alphanumeric" in rendered.stdout
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "phone.png"), render(Scene(token, 2, "phone", 5)))
    cv2.imwrite(str(photos / "paper.jpg"), render(Scene(token, 1, "paper", 6)))
    cv2.imwrite(str(photos / "blank.png"), render(Scene(token, 0, "paper", 7))[:40, :40])
    result = run("scan", "images", str(png), str(photos), "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {Path(r["file"]).name: r for r in rows}
    assert set(by_name) == {"token.png", "phone.png", "paper.jpg", "blank.png"}
    for name in ("token.png", "phone.png", "paper.jpg"):
        assert by_name[name]["ok"] and by_name[name]["text"] == token, by_name[name]
    assert by_name["blank.png"] == {"file": str(photos / "blank.png"), "ok": False, "error": "no QR code found"}
    assert result.returncode == 1  # one file failed


def test_errors_are_one_line(tmp_path: Path) -> None:
    for args in (("token", "render", "x", "--out", str(tmp_path / "a.gif")),
                 ("scan", "images", str(tmp_path / "empty-dir-that-is-missing")),
                 ("token", "issue", "--vehicle-id", "5", "--plate", "B 1", "--key", str(tmp_path / "nokey"))):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("spbu: error:"), result.stderr
