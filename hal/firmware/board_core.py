"""Relay-board safety logic, hardware-free: the firmware and the simulator both run this.

Inputs: received UART bytes, pulser counts, nozzle switches, E-stop; outputs: relay
states and bytes to send. Safety lives here, not on the Pi:
  - relays are off at boot and whenever the host has not sent a heartbeat for watchdog_ms;
  - the preset is enforced in pulses: the relay opens at the preset count by itself;
  - E-stop opens every relay at once and latches until a local reset;
  - pulses while the relay is open (after the post-stop settling time) are a fault:
    a stuck relay or tampering.
A fill ends (END) once the relay is open and the flow has settled, so valve overrun is
counted in the fill it belongs to.

MicroPython-compatible subset; times are integer milliseconds from the caller.
"""

from hal import relay_proto as rp
from hal.firmware.fw_update import FlashUpdate

FIRMWARE_VERSION = 1

IDLE = 0
RUNNING = 1
SETTLING = 2


class Channel:
    def __init__(self) -> None:
        self.state = IDLE
        self.relay = False
        self.nozzle = False
        self.auth_id = 0
        self.preset = 0
        self.pulses = 0
        self.totaliser = 0
        self.reason = 0
        self.last_pulse = 0
        self.fault = False


class BoardCore:
    def __init__(self, channels: int, watchdog_ms: int = 750, status_ms: int = 250,
                 settle_ms: int = 300, updater: FlashUpdate | None = None) -> None:
        self.link = rp.Link()
        self.updater = updater  # hal/firmware/fw_update.FlashUpdate, when the board has a filesystem
        self.channels = [Channel() for _ in range(channels)]
        self.watchdog_ms = watchdog_ms
        self.status_ms = status_ms
        self.settle_ms = settle_ms
        self.estop_latched = False
        self.last_heartbeat = -1
        self.last_status = 0
        self.unauthorised_pulses = 0
        self.boot_id = 0

    # --- inputs -------------------------------------------------------------------------

    def boot(self, now: int, boot_id: int = 0) -> None:
        """boot_id must differ from the previous boot's (firmware: a free-running timer)."""
        for ch in self.channels:
            ch.relay = False
            ch.state = IDLE
        self.boot_id = boot_id
        self.link.send(rp.BOARD_HELLO, (FIRMWARE_VERSION, len(self.channels), 0, boot_id), now)

    def feed(self, data: bytes, now: int) -> None:
        for mtype, values in self.link.feed(data, now):
            self._handle(mtype, values, now)

    def pulse(self, index: int, now: int) -> None:
        ch = self.channels[index]
        ch.totaliser = (ch.totaliser + 1) & 0xFFFFFFFF
        if ch.state == IDLE:
            self.unauthorised_pulses += 1
            if not ch.fault:
                ch.fault = True
                self.link.send(rp.FAULT, (index, rp.FAULT_UNAUTHORISED_FLOW, ch.totaliser), now)
            return
        ch.pulses += 1
        ch.last_pulse = now
        if ch.state == RUNNING and ch.pulses >= ch.preset:
            self._stop(index, rp.END_PRESET_REACHED, now)

    def nozzle(self, index: int, up: bool, now: int) -> None:
        ch = self.channels[index]
        if ch.nozzle == up:
            return
        ch.nozzle = up
        self.link.send(rp.NOZZLE, (index, 1 if up else 0), now)
        if not up and ch.state == RUNNING:
            self._stop(index, rp.END_NOZZLE_HUNG, now)

    def estop(self, now: int) -> None:
        self.estop_latched = True
        for index in range(len(self.channels)):
            self._stop(index, rp.END_ESTOP, now)

    def local_reset(self) -> None:
        """The technician's reset button: clears the E-stop latch and fault flags."""
        self.estop_latched = False
        for ch in self.channels:
            ch.fault = False

    def tick(self, now: int) -> None:
        if self.last_heartbeat < 0 or now - self.last_heartbeat > self.watchdog_ms:
            for index in range(len(self.channels)):
                self._stop(index, rp.END_HEARTBEAT_LOST, now)
        for index in range(len(self.channels)):
            ch = self.channels[index]
            if ch.state == SETTLING and now - ch.last_pulse >= self.settle_ms:
                ch.state = IDLE
                self.link.send(rp.END, (index, ch.auth_id, ch.pulses, ch.reason, ch.totaliser), now)
        if now - self.last_status >= self.status_ms:
            self.last_status = now
            for index in range(len(self.channels)):
                if self.channels[index].state != IDLE:
                    self.send_status(index, now)
        self.link.poll(now)

    # --- outputs ------------------------------------------------------------------------

    def relay(self, index: int) -> bool:
        return self.channels[index].relay

    def take_output(self) -> bytes:
        return self.link.take_output()

    def send_status(self, index: int, now: int) -> None:
        ch = self.channels[index]
        flags = 0
        if ch.relay:
            flags |= rp.FLAG_RELAY
        if ch.nozzle:
            flags |= rp.FLAG_NOZZLE
        if self.estop_latched:
            flags |= rp.FLAG_ESTOP
        if ch.fault:
            flags |= rp.FLAG_FAULT
        if ch.state != IDLE:
            flags |= rp.FLAG_ACTIVE
        self.link.send(rp.STATUS, (index, flags, ch.auth_id, ch.pulses, ch.totaliser), now)

    # --- internals ----------------------------------------------------------------------

    def _stop(self, index: int, reason: int, now: int) -> None:
        ch = self.channels[index]
        ch.relay = False
        if ch.state == RUNNING:
            ch.state = SETTLING
            ch.reason = reason
            ch.last_pulse = now

    def reset_requested(self) -> bool:
        return self.updater is not None and bool(self.updater.reset_requested)

    def _firmware(self, mtype: int, values: tuple, now: int) -> None:  # type: ignore[type-arg]
        if mtype == rp.FW_BEGIN:
            for index in range(len(self.channels)):  # relays off for the whole update
                self._stop(index, rp.END_HOST_STOP, now)
        result = (rp.FW_ERR_STATE, 0) if self.updater is None else self.updater.handle(mtype, values)
        if result is not None:
            self.link.send(rp.FW_RESULT, (mtype, result[0], result[1]), now)

    def _handle(self, mtype: int, values: tuple, now: int) -> None:  # type: ignore[type-arg]
        if mtype in rp.FW_TYPES:
            self._firmware(mtype, values, now)
        elif mtype == rp.HEARTBEAT:
            self.last_heartbeat = now
        elif mtype == rp.HOST_HELLO:
            # The host restarted: nothing it authorised before may keep running.
            for index in range(len(self.channels)):
                self._stop(index, rp.END_HOST_STOP, now)
            # ... and hears which firmware runs here (an update's health check needs it).
            self.link.send(rp.BOARD_HELLO, (FIRMWARE_VERSION, len(self.channels), 0, self.boot_id), now)
        elif mtype == rp.AUTHORIZE:
            self._authorize(values[0], values[1], values[2], now)
        elif mtype == rp.STOP:
            if 0 <= values[0] < len(self.channels):
                self._stop(values[0], rp.END_HOST_STOP, now)
        elif mtype == rp.QUERY and 0 <= values[0] < len(self.channels):
            self.send_status(values[0], now)

    def _authorize(self, index: int, auth_id: int, preset: int, now: int) -> None:
        if not 0 <= index < len(self.channels):
            return
        ch = self.channels[index]
        alive = self.last_heartbeat >= 0 and now - self.last_heartbeat <= self.watchdog_ms
        updating = self.updater is not None and self.updater.active
        if ch.state != IDLE or self.estop_latched or not alive or preset <= 0 or updating:
            self.link.send(rp.END, (index, auth_id, 0, rp.END_REJECTED, ch.totaliser), now)
            return
        ch.state = RUNNING
        ch.auth_id = auth_id
        ch.preset = preset
        ch.pulses = 0
        ch.relay = True
        ch.last_pulse = now
