"""Instances: pay-as-you-go rentals (docs/API.md §14, §8)."""

from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured

from config.settings.environment import env

# A pay-as-you-go rental holds this many hours of its price (a decimal, at least 2 minutes); each minute the started
# minute is charged from the hold and the hold is topped back up; when it cannot be, the rental ends.
try:
    RENTAL_PAYG_HOLD_HOURS = Decimal(env("RENTAL_PAYG_HOLD_HOURS", default="1"))
except ArithmeticError:
    RENTAL_PAYG_HOLD_HOURS = Decimal("NaN")
if not RENTAL_PAYG_HOLD_HOURS.is_finite() or RENTAL_PAYG_HOLD_HOURS * 60 < 2:
    raise ImproperlyConfigured("RENTAL_PAYG_HOLD_HOURS must be a number of hours of at least 2 minutes (0.034).")

# How often beat runs the pay-as-you-go charge (`rentals_payg_charge`). Each run charges the minutes started since
# the last one (per-minute ledger keys: never twice), so a shorter interval only charges a started minute sooner;
# more than 60 lets a started minute go uncharged (and the hold unrenewed) for longer.
RENTAL_PAYG_CHARGE_INTERVAL_S = env.float("RENTAL_PAYG_CHARGE_INTERVAL_S", default=60)
