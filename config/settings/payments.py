"""Payments: card top-ups (Stripe), provider payouts, x402 (payments/; docs/API.md §8, §15)."""

import json
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured

from config.settings.environment import env

# Unset STRIPE_SECRET_KEY: top-ups answer 503 payments_not_configured; unset STRIPE_WEBHOOK_SECRET: the webhook does.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
# Where Stripe's Checkout page sends the payer afterwards (the frontend's pages).
STRIPE_SUCCESS_URL = env("STRIPE_SUCCESS_URL", default="http://127.0.0.1:8000/api/v1/client/topups/?checkout=success")
STRIPE_CANCEL_URL = env("STRIPE_CANCEL_URL", default="http://127.0.0.1:8000/api/v1/client/topups/?checkout=cancel")
PAYOUT_MINIMUM = Decimal(env("PAYOUT_MINIMUM", default="10"))
# x402 (seed 000): keyless per-request payment of /v1/chat/completions in USDC; off while X402_PAY_TO is unset.
X402_PAY_TO = env("X402_PAY_TO", default="")
X402_NETWORK = env("X402_NETWORK", default="base-sepolia")
X402_ASSET = env("X402_ASSET", default="0x036CbD53842c5426634e7929541eC2318f3dCF7e")  # USDC on base-sepolia
X402_FACILITATOR_URL = env("X402_FACILITATOR_URL", default="https://x402.org/facilitator")
X402_MAX_TIMEOUT_S = env.int("X402_MAX_TIMEOUT_S", default=60)
X402_FACILITATOR_TIMEOUT_S = env.float("X402_FACILITATOR_TIMEOUT_S", default=15.0)


def _headers(raw: str) -> dict[str, str]:
    """X402_FACILITATOR_HEADERS: a JSON object of header names to values, e.g. a facilitator's API key."""
    try:
        headers = json.loads(raw) if raw.strip() else {}
    except ValueError:
        headers = None
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ImproperlyConfigured(
            'X402_FACILITATOR_HEADERS must be a JSON object of strings, e.g. {"Authorization": "Bearer ..."}.'
        )
    return headers


# Headers sent with every call to the facilitator (verify, settle): a hosted facilitator's API key.
X402_FACILITATOR_HEADERS = _headers(env("X402_FACILITATOR_HEADERS", default=""))
