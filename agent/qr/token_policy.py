"""What the signed policy says about a scanned identity, before eligibility.

- Legacy (unsigned) QR texts can be switched off (`legacy_qr: false`): anyone can invent
  one, so they are only as good as the allow-list entry they hash to.
- A signed token older than `max_token_age_days` is refused: a screenshot does not work
  for ever.
- A reissued QR revokes the old one: `token_min_issued` maps a vehicle id to the issue date
  of its current token; older tokens of that vehicle are refused at every station once the
  policy arrives. (Why an overlay in the policy and not a generation in each allow-list
  entry: the store holds 5.63 bytes per entry at 50M against a budget of 6, and reissues
  are rare; an entry older than the maximum age can be dropped from the overlay, because
  the age rule already refuses the tokens it revokes. docs/qr-token.md.)

The token carries its issue day only, so a QR reissued on the same day as the old one
revokes the old one from the next day.
"""

from __future__ import annotations

import datetime as dt

from agent.trust.documents import QuotaPolicy

LEGACY_DISABLED = "legacy_disabled"
TOKEN_EXPIRED = "token_expired"
TOKEN_REVOKED = "token_revoked"


def refusal(policy: QuotaPolicy | None, vehicle_id: int | None, issued: dt.date | None, legacy: bool,
            today: dt.date) -> str:
    """A refusal code, or "" when the policy has nothing against this identity."""
    if policy is None or vehicle_id is None:
        return ""
    if legacy:
        return "" if policy.legacy_qr else LEGACY_DISABLED
    if issued is None:
        return ""
    if issued > today + dt.timedelta(days=1):
        return TOKEN_EXPIRED  # issued "in the future": not a token headquarters made
    if policy.max_token_age_days is not None and (today - issued).days > policy.max_token_age_days:
        return TOKEN_EXPIRED
    floor = policy.token_min_issued.get(vehicle_id)
    if floor is not None and issued < floor:
        return TOKEN_REVOKED
    return ""
