"""A fuel dispenser's hydraulics and pulser, as the relay board (or a DART head) sees them.

Flow starts when the solenoid valve opens (authorised and nozzle up), ramps up to the
nominal rate over `ramp_s` (pump motor and valve), and after the valve is told to close a
few pulses of overrun still pass. The dispenser's own totaliser counts the fuel that
really flowed: the physical truth the agent's journal must match.

Faults a technician (or a test) can inject:
  no_flow        the valve opens but nothing flows (dry tank, blocked filter)
  stuck_valve    fuel flows with the nozzle up even when the relay is open (welded relay)
  pulser_noise   spurious pulses per second on the pulser line that are not fuel
  overrun        extra pulses after every valve close, beyond the normal 0..2
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FAULTS = ("no_flow", "stuck_valve", "pulser_noise", "overrun")


@dataclass
class Faults:
    no_flow: bool = False
    stuck_valve: bool = False
    pulser_noise_hz: float = 0.0
    overrun_pulses: int = 0


@dataclass
class Dispenser:
    flow_lps: float = 40 / 60
    pulses_per_litre: int = 100
    ramp_s: float = 0.0
    max_overrun_pulses: int = 2
    seed: int = 1
    faults: Faults = field(default_factory=Faults)
    nozzle_up: bool = False
    totaliser_pulses: int = 0  # fuel that really passed the meter
    flowing: bool = False
    _open_s: float = 0.0
    _fraction: float = 0.0
    _noise_fraction: float = 0.0
    _overrun_due: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def totaliser_ml(self) -> int:
        return self.totaliser_pulses * 1000 // self.pulses_per_litre

    def rate_lps(self) -> float:
        if self.ramp_s <= 0:
            return self.flow_lps
        return self.flow_lps * min(1.0, self._open_s / self.ramp_s)

    def valve_open(self, relay_closed: bool) -> bool:
        return self.nozzle_up and (relay_closed or self.faults.stuck_valve) and not self.faults.no_flow

    def fuel_pulses(self, dt_s: float, relay_closed: bool) -> int:
        """Pulses of real fuel in the next dt_s, if the valve stays as it is."""
        if not self.valve_open(relay_closed):
            return 0
        self._open_s += dt_s
        self._fraction += self.rate_lps() * self.pulses_per_litre * dt_s
        count = int(self._fraction)
        self._fraction -= count
        return count

    def valve_closed(self) -> None:
        """The valve was told to close: flow stops, after the overrun."""
        if self.flowing and self.nozzle_up:
            self._overrun_due = self._rng.randint(0, self.max_overrun_pulses) + self.faults.overrun_pulses
        self.flowing = False
        self._open_s = 0.0
        self._fraction = 0.0

    def overrun_pulse(self) -> bool:
        if self._overrun_due > 0:
            self._overrun_due -= 1
            return True
        return False

    def noise_pulses(self, dt_s: float) -> int:
        if self.faults.pulser_noise_hz <= 0:
            return 0
        self._noise_fraction += self.faults.pulser_noise_hz * dt_s
        count = int(self._noise_fraction)
        self._noise_fraction -= count
        return count
