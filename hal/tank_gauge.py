"""Pi-side driver for a Veeder-Root TLS-350 / TLS-4 class tank gauge on its RS-232 port
(computer format, hal/tls_proto.py). It asks in turn for the in-tank inventory (201),
the alarms (205) and, less often, the delivery report (202), one request at a time; each
answer becomes one event. A gauge that stops answering is reported (GaugeLink False)
and asked again at the normal pace.

Keep the gauge on this local serial line: thousands of TLS consoles sit unauthenticated
on the internet; this one is reachable only from the Pi.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from hal import tls_proto as tls
from hal.serial_link import PortDriver, SerialPortThread

RESPONSE_TIMEOUT_S = 3.0  # the console answers within a second; 3 s allows for a busy one
SILENT_AFTER = 3  # unanswered requests in a row before the gauge counts as gone


@dataclass(frozen=True)
class TankReading:
    tank: int
    product_code: str
    delivering: bool
    volume_l: float
    tc_volume_l: float
    ullage_l: float
    height_mm: float
    water_mm: float
    temperature_c: float
    water_volume_l: float


@dataclass(frozen=True)
class TankDelivery:
    tank: int
    start: str  # the console's local time, YYYY-MM-DDTHH:mm
    end: str
    start_volume_l: float
    end_volume_l: float

    @property
    def litres(self) -> float:
        return self.end_volume_l - self.start_volume_l


@dataclass(frozen=True)
class GaugeInventory:
    stamp: str
    tanks: tuple[TankReading, ...]


@dataclass(frozen=True)
class GaugeAlarms:
    stamp: str
    alarms: dict[int, tuple[str, ...]]  # tank -> alarm names


@dataclass(frozen=True)
class GaugeDeliveries:
    stamp: str
    deliveries: tuple[TankDelivery, ...]


@dataclass(frozen=True)
class GaugeLink:
    connected: bool  # the port is open and the console answers


GaugeEvent = GaugeInventory | GaugeAlarms | GaugeDeliveries | GaugeLink


def inventory_event(data: bytes) -> GaugeInventory:
    stamp, tanks = tls.parse_inventory(data)
    readings = []
    for number, product, status, f in tanks:
        readings.append(TankReading(
            number, product, bool(status & tls.STATUS_DELIVERY), f.get("volume", 0.0), f.get("tc_volume", 0.0),
            f.get("ullage", 0.0), f.get("height", 0.0), f.get("water", 0.0), f.get("temperature", 0.0),
            f.get("water_volume", 0.0)))
    return GaugeInventory(stamp, tuple(readings))


def deliveries_event(data: bytes) -> GaugeDeliveries:
    stamp, tanks = tls.parse_deliveries(data)
    found = [TankDelivery(number, start, end, f.get("start_volume", 0.0), f.get("end_volume", 0.0))
             for number, _, deliveries in tanks for start, end, f in deliveries]
    return GaugeDeliveries(stamp, tuple(found))


def alarms_event(data: bytes) -> GaugeAlarms:
    stamp, tanks = tls.parse_alarms(data)
    return GaugeAlarms(stamp, {number: tuple(names) for number, names in tanks})


DECODERS: dict[str, Callable[[bytes], GaugeEvent]] = {
    tls.INVENTORY: inventory_event, tls.DELIVERIES: deliveries_event, tls.ALARMS_FN: alarms_event}


class TankGauge(PortDriver):
    def __init__(self, port: str, on_event: Callable[[GaugeEvent], None], baudrate: int = 9600,
                 poll_s: float = 10.0, deliveries_every: int = 6) -> None:
        self._on_event = on_event
        self._decoder = tls.Decoder()
        self._lock = threading.Lock()
        self._poll_s = poll_s
        # the delivery report first: the agent's shift bookkeeping starts from it
        self._cycle = [tls.DELIVERIES] + [tls.INVENTORY, tls.ALARMS_FN] * deliveries_every
        self._next = 0
        self._asked: tuple[str, float] | None = None  # (function, when)
        self._next_at = 0.0
        self._silent = 0
        self._answering = False
        self._alive_at = time.monotonic()
        self.errors = 0
        self._port = SerialPortThread(
            port, self._bytes, self._state, baudrate=baudrate, read_timeout_s=0.05, on_idle=self._tick,
            name=f"tank-gauge:{port}", flush_on_open=True,
            serial_kwargs={"parity": serial.PARITY_ODD, "bytesize": serial.SEVENBITS})

    def _state(self, connected: bool) -> None:
        with self._lock:
            self._asked = None
            self._next_at = 0.0
        if not connected:
            self._report(False)

    def _report(self, answering: bool) -> None:
        if answering != self._answering:
            self._answering = answering
            self._on_event(GaugeLink(answering))

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._asked is not None:
                if now - self._asked[1] < RESPONSE_TIMEOUT_S:
                    return
                self._asked = None
                self._silent += 1
            if now < self._next_at:
                return
            function = self._cycle[self._next % len(self._cycle)]
            self._next += 1
            self._asked = (function, now)
            self._next_at = now + self._poll_s / 2  # inventory and alarms each poll period
            silent = self._silent >= SILENT_AFTER
        if silent:
            self._report(False)
        self._port.write(tls.command(function))

    def _bytes(self, data: bytes) -> None:
        events: list[GaugeEvent] = []
        with self._lock:
            for message in self._decoder.feed(data):
                if message[0] == "error":
                    self.errors += 1
                    continue
                self._asked = None
                self._silent = 0
                if message[0] != "message" or message[1] not in DECODERS:
                    continue
                try:
                    events.append(DECODERS[message[1]](message[3]))
                except tls.TlsError:
                    self.errors += 1  # a well-framed answer with a malformed body: ignored, counted
        if events or self._silent == 0:
            self._report(True)
        for event in events:
            self._on_event(event)
