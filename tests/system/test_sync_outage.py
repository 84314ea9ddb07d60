"""Delivery through outages on real parts: the station's link and outbox against a private
mosquitto and two collector processes' worth of collectors (one SQLite store). The broker
goes away and comes back, the agent restarts mid-drain: everything arrives exactly once and
the outbox ends empty. Plus the outbox's resend backoff and drain rate (pure logic)."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from agent import topics
from agent.journal import Journal
from agent.mqtt_link import MqttLink
from agent.outbox import OutboxSender
from hq.collector import Collector, CollectorStore
from simulators.broker import MosquittoBroker
from simulators.txgen import sim_ack_key, sim_station_keys, synthetic_tx
from tests.bench.sync import STATION, drain, records


class Agent:
    """The station's delivery half, as a restart would find it: journal file, link, outbox."""

    def __init__(self, path: Path, broker: MosquittoBroker) -> None:
        self.journal = Journal(path)
        self.events: queue.Queue[object] = queue.Queue()
        self.link = MqttLink(STATION, broker.host, broker.port, self.events.put)
        self.link.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.sender = OutboxSender(self.journal, window=200, resend_after_s=3.0)
        self.link.start()

    def close(self) -> None:
        self.link.close()
        self.journal.close()


def stored(dsn: str) -> list[str]:
    store = CollectorStore(dsn)
    try:
        return store.tx_ids()
    finally:
        store.close()


@pytest.mark.integration
def test_offline_pile_drains_exactly_once_through_flaps_and_an_agent_restart(fresh_broker: MosquittoBroker,
                                                                            tmp_path: Path, pg_dsn: str) -> None:
    tx = records(3000)
    journal_path = tmp_path / "journal.sqlite"
    fresh_broker.stop()
    agent = Agent(journal_path, fresh_broker)  # no broker: offline
    collectors: list[Collector] = []
    try:
        agent.journal.outbox_put([(r["tx_id"], topics.tx(STATION), r) for r in tx[:2000]])
        fresh_broker.start()
        collectors = [Collector(fresh_broker.host, fresh_broker.port, pg_dsn, name=f"c{i}",
                                group="outage", ack_key=sim_ack_key(),
                                verifier=sim_station_keys([STATION]).verify).start() for i in (1, 2)]
        # Part way through the drain the link flaps: the broker restarts under everyone.
        drain(agent.journal, agent.link, agent.events, agent.sender, timeout_s=30,
              until=lambda: agent.journal.outbox_depth() <= 1500)
        assert agent.journal.outbox_depth() <= 1500, "nothing drained before the flap"
        fresh_broker.stop()
        agent.journal.outbox_put([(r["tx_id"], topics.tx(STATION), r) for r in tx[2000:2500]])  # sold offline
        fresh_broker.start()
        # The agent restarts (a crash or a deploy): in-flight state is gone, the journal is not.
        agent.close()
        agent = Agent(journal_path, fresh_broker)
        agent.journal.outbox_put([(r["tx_id"], topics.tx(STATION), r) for r in tx[2500:]])
        drain(agent.journal, agent.link, agent.events, agent.sender, timeout_s=120)
        assert agent.journal.outbox_depth() == 0
    finally:
        agent.close()
        for collector in collectors:
            collector.close()
    ids = stored(pg_dsn)
    assert len(ids) == len(set(ids)) == len(tx)
    assert set(ids) == {r["tx_id"] for r in tx}


def test_resend_backs_off_while_headquarters_is_silent_and_resets_on_an_ack(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    try:
        journal.outbox_put([(f"m{i}", "t", synthetic_tx(STATION, i, 1, 100)) for i in range(1, 4)])
        sender = OutboxSender(journal, window=8, resend_after_s=10.0, max_resend_after_s=35.0)
        sent: list[str] = []

        def publish(topic: str, payload: bytes) -> bool:
            sent.append(topic)
            return True

        assert sender.pump(0.0, publish) == 3
        assert sender.pump(9.0, publish) == 0  # within the first wait
        assert sender.pump(10.5, publish) == 3  # silent for 10 s: everything again
        assert sender.resend_after_s == 20.0
        assert sender.pump(25.0, publish) == 0  # now waits 20 s
        assert sender.pump(31.0, publish) == 3
        assert sender.pump(70.0, publish) == 3
        assert sender.resend_after_s == 35.0  # capped
        assert sender.on_ack(["m1"], now=71.0) == 1
        assert sender.resend_after_s == 10.0
        assert sender.drain_rate(72.0) == pytest.approx(1 / 60)
        assert sender.drain_rate(200.0) == 0.0  # the rate window has passed
    finally:
        journal.close()
