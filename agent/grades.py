"""Multi-grade pumps: which product a scan is for.

On a dispenser with several nozzles (Pertalite and Solar on one cabinet) the nozzle the
customer lifts decides the product. A scan with a nozzle already out is for that grade.
A scan before the lift is checked for every grade of the pump; the eligible ones are
remembered (`PendingLift`), nothing is journaled or authorised yet, and the lift of an
eligible nozzle opens the session for that grade alone (the pump is told to deliver only
from that nozzle). Lifting a nozzle the vehicle may not have is refused and dispenses
nothing: no authorisation exists for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import PumpConfig
from agent.eligibility import Decision
from agent.payments.desk import PaymentChoice

WRONG_PRODUCT = "wrong_product"


@dataclass(frozen=True)
class PendingLift:
    text: str
    payment: PaymentChoice | None
    requested_ml: int | None
    products: tuple[str, ...]  # the grades this vehicle may take now
    plate: str
    at: float  # monotonic


def multi_grade(config: PumpConfig) -> bool:
    return len(config.nozzle_products) > 1


def nozzle_product(config: PumpConfig, nozzle: int) -> str | None:
    """The product of a logical nozzle (1-based); None for a nozzle the pump lacks. Nozzle 0
    (a device that does not tell) is the pump's only grade."""
    grades = config.nozzle_products
    if nozzle == 0:
        return grades[0] if len(grades) == 1 else None
    return grades[nozzle - 1] if 1 <= nozzle <= len(grades) else None


def nozzle_of(config: PumpConfig, product: str) -> int:
    return config.nozzle_products.index(product) + 1


def refusal(decisions: list[Decision]) -> Decision:
    """The refusal to show when no grade is eligible: the most telling one (a vehicle with
    no right to any grade here is simply `wrong_product`)."""
    for decision in decisions:
        if decision.reason != WRONG_PRODUCT:
            return decision
    return decisions[0]
