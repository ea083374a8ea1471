"""Key limits, plans and usage roll-ups (docs/API.md §12, §8)."""

from config.settings.environment import env
from config.settings.inference import USAGE_JOURNAL_URL

# The per-minute rpm/tpm counters of API keys live in this Redis (by default the usage journal's); empty: in the
# database (the embedded default).
KEY_LIMITS_REDIS_URL = env("KEY_LIMITS_REDIS_URL", default=USAGE_JOURNAL_URL)
# Subscriptions due are renewed (or lapse) this often.
PLANS_RENEW_INTERVAL_S = env.int("PLANS_RENEW_INTERVAL_S", default=300)
