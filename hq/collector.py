"""Headquarters' transaction collector.

Several collector processes share one MQTT shared subscription
(`$share/collectors/spbu/v1/+/tx`, hq/shared_subscriber.py), so the broker hands each message
to one of them. Each stores what it receives in one PostgreSQL database, the national usage
ledger's (hq/ledger.py: tx_id primary key, ON CONFLICT DO NOTHING, and only the rows inserted
add to the vehicles' usage: a resent transaction is counted once whichever collector gets
it), commits, and only then acknowledges the ids to the station on `hq/v1/ack/<station>`.

Cross-station reconciliation: stations count the quota nationally (docs/national-quota.md),
but one cut off from headquarters sells within its offline share unseen; the ledger sums
each vehicle's litres per product and local day over all stations and raises an alert
(the `alerts` table) when the sum passes the limit. hq/ledger_node.py is this collector
plus the usage feed to stations.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from hq.ledger import LedgerStore, QuotaAlert
from hq.records import RecordError, parse_record
from hq.shared_subscriber import SHARE_GROUP, SharedSubscriber
from hq.tx_verify import TxSignatureError, Verifier

log = logging.getLogger(__name__)

__all__ = ["Collector", "CollectorStore", "RecordError", "parse_record", "share_topic"]


def share_topic(group: str = SHARE_GROUP) -> str:
    return f"$share/{group}/{topics.TX_ALL}"


# The store is the national usage ledger's (hq/ledger.py, PostgreSQL): a transaction and the
# usage it adds commit together, idempotent by tx_id across every collector process.
CollectorStore = LedgerStore


class Collector(SharedSubscriber):
    """One collector process: transactions in, stored and committed, acknowledged."""

    def __init__(self, host: str, port: int, dsn: str, name: str | None = None,
                 group: str = SHARE_GROUP, on_alert: Callable[[QuotaAlert], None] | None = None,
                 tls: tuple[Path, Path, Path] | None = None, *, ack_key: Ed25519PrivateKey,
                 verifier: Verifier) -> None:
        """verifier: checks each record's station signature (hq/tx_verify.py StationKeys.verify)."""
        super().__init__(host, port, name or f"collector-{uuid.uuid4().hex[:8]}", group, ack_key, tls)
        self.verifier = verifier
        self.store = LedgerStore(dsn)
        self.on_alert = on_alert
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0

    def subscriptions(self) -> list[str]:
        return [topics.TX_ALL]

    def start(self, timeout_s: float = 10.0) -> Collector:
        super().start(timeout_s)
        return self

    def close(self) -> None:
        super().close()
        self.store.close()

    def handle(self, batch: list[tuple[str, bytes]]) -> None:
        records: dict[str, dict[str, Any]] = {}
        raw: dict[str, str] = {}
        valid = 0
        for topic, payload in batch:
            self.received += 1
            try:
                record = parse_record(topic, payload)
                self.verifier(record)
            except (RecordError, TxSignatureError) as exc:
                self.rejected += 1
                log.warning("%s: transaction on %s refused: %s", self.name, topic, exc)
                continue
            valid += 1
            if record["tx_id"] not in records:
                records[record["tx_id"]] = record
                raw[record["tx_id"]] = payload.decode()
        if not records:
            return
        result = self.store.store(list(records.values()), self.name, list(raw.values()))
        self.stored += result.stored
        self.duplicates += result.duplicates + valid - len(records)
        for alert in result.alerts:
            log.warning("quota exceeded across stations: %s", alert.as_dict())
            if self.on_alert is not None:
                self.on_alert(alert)
        self.acknowledge(records.values())
