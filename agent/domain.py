"""Domain vocabulary shared by the agent, the simulators and the documents headquarters signs."""

from __future__ import annotations

PRODUCTS: dict[str, int] = {"pertalite": 0x01, "solar": 0x02}  # name -> allow-list product bit
PRODUCT_LABELS: dict[str, str] = {"pertalite": "Pertalite", "solar": "Solar"}

CATEGORIES: tuple[str, ...] = (
    "motorcycle",
    "private_car",
    "public_passenger_4w",
    "goods_4w",
    "public_6w_plus",
)

STATUS_ACTIVE = "active"
STATUS_SUSPENDED = "suspended"

# Station time zones: the quota day is the station's local day.
ZONES: dict[str, int] = {"WIB": 7, "WITA": 8, "WIT": 9}


def format_litres(ml: int, lang: str = "id") -> str:
    """Millilitres as litres with two decimals, Indonesian decimal comma by default."""
    text = f"{ml / 1000:.2f}"
    return text.replace(".", ",") if lang == "id" else text


def format_rupiah(amount: int, lang: str = "id") -> str:
    grouped = f"{amount:,}"
    return "Rp " + (grouped.replace(",", ".") if lang == "id" else grouped)


def mask_plate(plate: str) -> str:
    """Keep the region code and suffix, hide the number: 'B 1234 XYZ' -> 'B ***4 XYZ'."""
    parts = plate.split()
    if len(parts) >= 2 and parts[1]:
        parts[1] = "*" * (len(parts[1]) - 1) + parts[1][-1]
    return " ".join(parts)


def amount_idr(dispensed_ml: int, price_idr_per_l: int) -> int:
    """Rupiah for a metered volume, rounded half up to the whole Rupiah (no smaller coin)."""
    return (dispensed_ml * price_idr_per_l + 500) // 1000
