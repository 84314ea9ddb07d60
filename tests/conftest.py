"""Fixtures every test module reuses: a private mosquitto per session, pseudo-terminal
devices, a temp station directory and real Ed25519 key material."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from simulators.broker import MosquittoBroker
from simulators.postgres import PostgresServer
from simulators.pty_device import PtyDevice

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One private broker for the session, on a free loopback port; its log is kept in the
    session's temp dir and shown when a test using it fails."""
    broker = MosquittoBroker(workdir=tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker of the test's own, for tests that stop and restart it."""
    broker = MosquittoBroker(workdir=tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the session (initdb in a temp dir, free port, unix socket
    there; as the unprivileged `postgres` user when the tests run as root)."""
    server = PostgresServer(durable=False)
    server.start()
    yield server
    server.close()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """A fresh database of the test's own on the session's server."""
    import uuid

    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pty_device() -> Iterator[PtyDevice]:
    device = PtyDevice()
    yield device
    device.close()


@pytest.fixture
def station_dir(tmp_path: Path) -> Path:
    path = tmp_path / "station"
    path.mkdir()
    return path


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def validate(name: str, payload: Any) -> None:
    jsonschema.validate(payload, schema(name), format_checker=jsonschema.FormatChecker())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test that used a broker gets the broker's log in its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("mosquitto", "fresh_broker"):
            broker = funcargs.get(name)
            if isinstance(broker, MosquittoBroker):
                report.sections.append((f"{name} log ({broker.log_path})", broker.log_tail(40)))
