"""Writes for payments: card top-ups (Stripe), provider payouts, x402 payers and their payments.

Money moves only through clients/ledger/, keyed by the row it belongs to: `topup:<id>` (kind topup, from the
Stripe clearing account), `payout:<id>` (a hold, then kind payout to the payouts account), `x402:<id>` (kind x402,
from the x402 clearing account). A status changes by a conditional UPDATE or under the row's lock, in the same
transaction as its posting, so concurrent or repeated deliveries act once.
"""

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerAccountKind, LedgerEntryKind
from clients.models import Client
from core.errors import NotFound
from payments import stripe_gateway
from payments.choices import PayoutStatus, TopUpStatus, X402PaymentStatus
from payments.errors import (
    CannotApproveOwnPayout,
    InvalidSignature,
    InvalidWebhookPayload,
    PaymentProviderError,
    PaymentsNotConfigured,
    PayoutAmountInvalid,
    PayoutNotPending,
)
from payments.models import Payout, TopUp, X402Payer, X402Payment

log = logging.getLogger(__name__)

# --- Top-ups -------------------------------------------------------------------------------------------------------


def stripe_require_configured() -> None:
    if not stripe_gateway.configured():
        raise PaymentsNotConfigured("Card payments are not configured on this server (STRIPE_SECRET_KEY).")


def topup_create(*, client: Client, amount: Decimal) -> TopUp:
    """A pending top-up and its Stripe Checkout Session; 503 when Stripe is not configured, 502 if Stripe fails."""
    stripe_require_configured()
    topup = TopUp.objects.create(client=client, amount=amount)  # committed first: the session names its id
    try:
        session_id, url = stripe_gateway.checkout_session_create(
            topup_id=topup.pk, client_id=client.pk, amount=amount, email=client.user.email
        )
    except stripe_gateway.GatewayError as exc:
        TopUp.objects.filter(pk=topup.pk).update(status=TopUpStatus.FAILED, updated_at=timezone.now())
        raise PaymentProviderError(f"The payment provider failed: {exc}") from exc
    TopUp.objects.filter(pk=topup.pk).update(stripe_session_id=session_id, checkout_url=url, updated_at=timezone.now())
    topup.refresh_from_db()
    return topup


# Events we act on; any other event is acknowledged and ignored.
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
FAILED_EVENT = "checkout.session.async_payment_failed"
EXPIRED_EVENT = "checkout.session.expired"


def stripe_webhook_handle(*, payload: bytes, signature: str | None) -> bool:
    """Verify a webhook delivery and act on it; True if it changed a top-up. Safe to deliver any number of times."""
    if not stripe_gateway.webhook_configured():
        raise PaymentsNotConfigured("Stripe webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET).")
    try:
        event = stripe_gateway.webhook_event(payload=payload, signature=signature)
    except stripe_gateway.BadSignature as exc:
        raise InvalidSignature(f"The Stripe-Signature header does not verify: {exc}") from exc
    except stripe_gateway.BadPayload as exc:
        raise InvalidWebhookPayload(str(exc)) from exc
    kind, session = event["type"], event["data"]["object"]
    if kind not in (*PAID_EVENTS, FAILED_EVENT, EXPIRED_EVENT) or session.get("object") != "checkout.session":
        return False
    topup = _topup_of_session(session)
    if topup is None:
        log.info("stripe event %s for a session that is not one of our top-ups: ignored", event.get("id"))
        return False
    if kind in PAID_EVENTS:
        if session.get("payment_status") != "paid":
            return False  # a delayed payment method: async_payment_succeeded follows
        return topup_credit(topup_id=topup.pk, session=session)
    return topup_close(topup_id=topup.pk, status=TopUpStatus.FAILED if kind == FAILED_EVENT else TopUpStatus.EXPIRED)


def _topup_of_session(session: dict[str, Any]) -> TopUp | None:
    metadata = session.get("metadata")
    raw = (metadata.get("topup_id") if isinstance(metadata, dict) else None) or session.get("client_reference_id")
    try:
        topup_id = int(str(raw))
    except (TypeError, ValueError):
        return None
    if not 0 < topup_id < 2**63:  # another system's reference: no id of ours
        return None
    topup = TopUp.objects.filter(pk=topup_id).first()
    if topup is None or (topup.stripe_session_id and topup.stripe_session_id != session.get("id")):
        return None
    return topup


@transaction.atomic
def topup_credit(*, topup_id: int, session: dict[str, Any]) -> bool:
    """Credit a paid top-up once (ledger kind topup, key `topup:<id>`); False if it was credited already."""
    topup = TopUp.objects.select_for_update().select_related("client").get(pk=topup_id)
    if topup.status == TopUpStatus.SUCCEEDED:
        return False  # delivered again, or a replay: credited once already
    if session.get("currency") != "usd" or session.get("amount_total") != stripe_gateway.cents(topup.amount):
        log.error("stripe session %s paid %s %s for topup %s of %s USD: not credited", session.get("id"),
                  session.get("amount_total"), session.get("currency"), topup.pk, topup.amount)  # fmt: skip
        return False
    ledger.deposit(
        client_id=topup.client_id,
        amount=topup.amount,
        key=topup.ledger_key,
        kind=LedgerEntryKind.TOPUP,
        ref=topup.ledger_key,
        source=LedgerAccountKind.STRIPE_CLEARING,
        memo=f"card top-up #{topup.pk}",
    )
    now = timezone.now()
    # A paid session is final: it supersedes an earlier `expired`/`failed` that arrived out of order.
    topup.status, topup.completed_at, topup.updated_at = TopUpStatus.SUCCEEDED, now, now
    if not topup.stripe_session_id:
        topup.stripe_session_id = session.get("id")
    topup.save(update_fields=["status", "completed_at", "updated_at", "stripe_session_id"])
    return True


def topup_close(*, topup_id: int, status: str) -> bool:
    """Mark a top-up that was not paid `failed` or `expired`; never one already credited."""
    changed = TopUp.objects.filter(pk=topup_id, status=TopUpStatus.PENDING).update(
        status=status, updated_at=timezone.now()
    )
    return bool(changed)


# --- Payouts -------------------------------------------------------------------------------------------------------


@transaction.atomic
def payout_request(*, client: Client, amount: Decimal) -> Payout:
    """Hold `amount` of the provider's available balance for a payout (ledger hold `payout:<id>`).

    The hold is placed under the client's row lock, so two requests at once can never hold more than it has.
    """
    minimum = settings.PAYOUT_MINIMUM
    if amount < minimum:
        raise PayoutAmountInvalid(f"A payout is at least {minimum}.", attr="amount")
    payout = Payout.objects.create(client=client, amount=amount)
    try:
        ledger.hold_place(
            client_id=client.pk, amount=amount, key=payout.hold_key, ref=payout.hold_key, memo=f"payout #{payout.pk}"
        )
    except ledger.InsufficientFunds as exc:
        raise PayoutAmountInvalid(
            f"The amount is more than the available balance ({ledger.balance_of(client_id=client.pk)}).", attr="amount"
        ) from exc
    return payout


def _decide(payout_id: int) -> Payout:
    payout = Payout.objects.select_for_update().filter(pk=payout_id).first()
    if payout is None:
        raise NotFound("No payout with this id.")
    if payout.status != PayoutStatus.PENDING:
        raise PayoutNotPending(f"The payout is {payout.status} already.")
    return payout


@transaction.atomic
def payout_approve(*, payout_id: int, admin: Client, reference: str) -> Payout:
    """Pay a pending payout: the held amount leaves the books (ledger kind payout, to the payouts account)."""
    payout = _decide(payout_id)
    if payout.client_id == admin.pk:
        raise CannotApproveOwnPayout("Nobody approves their own payout; another admin must.")
    ledger.hold_pay_out(
        key=payout.hold_key,
        kind=LedgerEntryKind.PAYOUT,
        destination=LedgerAccountKind.PAYOUTS,
        memo=f"payout #{payout.pk} {reference}"[:255],
    )
    return _decided(payout, status=PayoutStatus.PAID, admin=admin, reference=reference)


@transaction.atomic
def payout_reject(*, payout_id: int, admin: Client, reference: str = "") -> Payout:
    """Refuse a pending payout: its hold is released to the provider's balance."""
    payout = _decide(payout_id)
    ledger.hold_release(key=payout.hold_key)
    return _decided(payout, status=PayoutStatus.REJECTED, admin=admin, reference=reference)


def _decided(payout: Payout, *, status: str, admin: Client, reference: str) -> Payout:
    now = timezone.now()
    payout.status, payout.reference, payout.decided_by_id, payout.decided_at, payout.updated_at = (
        status, reference, admin.user_id, now, now,
    )  # fmt: skip
    payout.save(update_fields=["status", "reference", "decided_by", "decided_at", "updated_at"])
    return payout


# --- x402 payers -------------------------------------------------------------------------------------------------


def x402_payer_get_or_create(*, address: str) -> X402Payer:
    """The account of a payer address (lower case): a client `x402:<address>` that cannot log in."""
    address = address.lower()
    payer = X402Payer.objects.select_related("client").filter(address=address).first()
    if payer is not None:
        return payer
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=f"x402:{address}", password=None)  # no login
            return X402Payer.objects.create(address=address, client=user.client)
    except IntegrityError:  # a concurrent first payment of the same address made it
        return X402Payer.objects.select_related("client").get(address=address)


class NonceUsed(Exception):
    """This X-PAYMENT's authorization was accepted before."""


def x402_payment_record(*, payer: X402Payer, network: str, nonce: str, amount: Decimal, credit: bool) -> X402Payment:
    """Record a verified payment (its nonce used once) and, with `credit`, credit it to the payer (kind x402);
    without, it is `unused` (only proof of the address) until x402_payment_credit."""
    try:
        with transaction.atomic():
            payment = X402Payment.objects.create(
                payer=payer, network=network, nonce=nonce, amount=amount, status=X402PaymentStatus.UNUSED
            )
            if credit:
                x402_payment_credit(payment=payment)
    except IntegrityError as exc:
        raise NonceUsed(nonce) from exc
    return payment


@transaction.atomic
def x402_payment_credit(*, payment: X402Payment) -> None:
    """Credit an `unused` payment to its payer after all (`verified`, kind x402, key `x402:<id>`); once."""
    changed = X402Payment.objects.filter(pk=payment.pk, status=X402PaymentStatus.UNUSED).update(
        status=X402PaymentStatus.VERIFIED
    )
    payment.status = X402PaymentStatus.VERIFIED
    if not changed:
        return
    ledger.deposit(
        client_id=payment.payer.client_id,
        amount=payment.amount,
        key=payment.ledger_key,
        kind=LedgerEntryKind.X402,
        ref=payment.ledger_key,
        source=LedgerAccountKind.X402_CLEARING,
        memo=f"x402 payment #{payment.pk} from {payment.payer.address}",
    )


def x402_payment_settled(*, payment: X402Payment, transaction_hash: str) -> None:
    X402Payment.objects.filter(pk=payment.pk).update(
        status=X402PaymentStatus.SETTLED, transaction=_text(transaction_hash, 100), settled_at=timezone.now()
    )


@transaction.atomic
def x402_payment_failed(*, payment: X402Payment, reason: str) -> None:
    """Settlement failed: what is left of the payment's credit goes back out (kind x402, `x402-reversal:<id>`)."""
    changed = X402Payment.objects.filter(pk=payment.pk, status=X402PaymentStatus.VERIFIED).update(
        status=X402PaymentStatus.FAILED, error=_text(reason, 255)
    )
    if changed:
        ledger.withdraw(
            client_id=payment.payer.client_id,
            amount=payment.amount,
            key=f"x402-reversal:{payment.pk}",
            kind=LedgerEntryKind.X402,
            ref=payment.ledger_key,
            destination=LedgerAccountKind.X402_CLEARING,
            memo=_text(f"x402 payment #{payment.pk} not settled: {reason}", 255),
        )


def _text(value: str, length: int) -> str:
    """What the facilitator said, storable: no NUL (PostgreSQL refuses it in text), at most `length` characters."""
    return value.replace("\x00", "")[:length]
