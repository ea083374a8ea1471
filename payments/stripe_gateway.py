"""Stripe, through its official library: Checkout Sessions out, signed webhook events in.

`STRIPE_API_BASE` points the library elsewhere (a test's local stub of Stripe's API, a proxy); the webhook's
signature is checked by `stripe.Webhook.construct_event` with the library's default tolerance (300 s).
"""

from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings


class GatewayError(Exception):
    """Stripe could not be reached or refused the request."""


class BadSignature(Exception):
    """The webhook's Stripe-Signature is missing, wrong or stale."""


class BadPayload(Exception):
    """The webhook's body is not a Stripe event."""


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def webhook_configured() -> bool:
    return bool(settings.STRIPE_WEBHOOK_SECRET)


def cents(amount: Decimal) -> int:
    """A whole-cent USD amount in Stripe's unit (cents)."""
    return int((amount * 100).to_integral_value())


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}, max_network_retries=2
    )


def checkout_session_create(*, topup_id: int, client_id: int, amount: Decimal, email: str) -> tuple[str, str]:
    """A Checkout Session paying `amount` USD for top-up `topup_id`: (session id, its checkout URL)."""
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": cents(amount),
                    "product_data": {"name": "GPU Marketplace credit"},
                },
                "quantity": 1,
            }
        ],
        "client_reference_id": str(topup_id),
        "metadata": {"topup_id": str(topup_id), "client_id": str(client_id)},
        "success_url": settings.STRIPE_SUCCESS_URL,
        "cancel_url": settings.STRIPE_CANCEL_URL,
    }
    if email:
        params["customer_email"] = email
    try:
        # The idempotency key makes a retried call return the same session instead of a second one.
        session = _client().v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]  # a plain dict of the TypedDict's keys
            options={"idempotency_key": f"topup:{topup_id}"},
        )
    except stripe.StripeError as exc:
        raise GatewayError(str(exc.user_message or exc) or "Stripe refused the request.") from exc
    if not session.id or not session.url:
        raise GatewayError("Stripe answered without a session id or URL.")
    return session.id, session.url


def webhook_event(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The verified event as a plain dict."""
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(str(exc)) from exc
    except (ValueError, UnicodeDecodeError) as exc:  # a signed body that is not a JSON event
        raise BadPayload("The body is not a Stripe event.") from exc
    data = event.to_dict()
    if not isinstance(data.get("type"), str) or not isinstance((data.get("data") or {}).get("object"), dict):
        raise BadPayload("The event has no type or object.")
    return data
