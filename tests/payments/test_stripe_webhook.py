"""POST /api/v1/payments/stripe/webhook/: signed by Stripe's scheme, verified by the stripe library, credited once."""

import time
from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import LedgerAccountKind, LedgerTransactionKind
from clients.models import LedgerEntry, LedgerTransaction
from payments.choices import TopUpStatus
from payments.models import TopUp
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.conftest import bearer
from tests.payments.conftest import WEBHOOK_SECRET
from tests.support.stub_stripe import event, sign

URL = "/api/v1/payments/stripe/webhook/"


@pytest.fixture
def opened(api_client, user_client, stub_stripe):  # type: ignore[no-untyped-def]
    """A pending 40.00 top-up of `user_client` and the Checkout Session Stripe made for it."""
    client, key = user_client
    r = api_client.post("/api/v1/client/topups/", {"amount": "40.00"}, format="json", **bearer(key))
    assert r.status_code == 201
    topup = TopUp.objects.get(pk=r.json()["id"])
    return client, topup, stub_stripe.sessions[topup.stripe_session_id]


def deliver(api_client, payload: str, signature: str | None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return api_client.post(URL, data=payload, content_type="application/json", **headers)


def paid(session: dict) -> str:
    return event("checkout.session.completed", session, status="complete", payment_status="paid")


def topup_transactions() -> int:
    return LedgerTransaction.objects.filter(kind=LedgerTransactionKind.TOPUP).count()


def test_completed_paid_session_credits_the_topup_once(api_client, opened):
    client, topup, session = opened
    payload = paid(session)

    first = deliver(api_client, payload, sign(payload, WEBHOOK_SECRET))
    again = deliver(api_client, payload, sign(payload, WEBHOOK_SECRET))

    assert first.status_code == 200 and first.json() == {"received": True, "handled": True}
    assert again.status_code == 200 and again.json()["handled"] is False
    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED and topup.completed_at is not None
    assert ledger.balance_of(client_id=client.pk) == Decimal("40")
    [txn] = LedgerTransaction.objects.filter(kind=LedgerTransactionKind.TOPUP)
    assert txn.key == f"topup:topup:{topup.pk}"
    assert account_sum(LedgerAccountKind.STRIPE_CLEARING) == Decimal("-40")
    mine = LedgerEntry.objects.filter(account__client=client).values_list("kind", "ref", "amount")
    assert list(mine) == [("topup", f"topup:{topup.pk}", Decimal("40"))]
    assert_books_balanced()


def test_a_new_event_for_the_same_session_credits_nothing_more(api_client, opened):
    client, _, session = opened
    for _ in range(3):  # Stripe may send the same event again, or another event id for the same payment
        payload = paid(session)
        assert deliver(api_client, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200
    assert ledger.balance_of(client_id=client.pk) == Decimal("40") and topup_transactions() == 1


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "garbage",
        "t=1,v1=",
        sign("{}", WEBHOOK_SECRET),  # signed, but another body
        "SIGNED_WITH_OTHER_SECRET",
        "STALE",
    ],
)
def test_bad_or_stale_signature_is_400_and_credits_nothing(api_client, opened, signature):
    client, topup, session = opened
    payload = paid(session)
    if signature == "SIGNED_WITH_OTHER_SECRET":
        signature = sign(payload, "whsec_someone_else")
    elif signature == "STALE":
        signature = sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)  # past the library's 300 s

    r = deliver(api_client, payload, signature)

    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "invalid_signature"
    topup.refresh_from_db()
    assert topup.status == TopUpStatus.PENDING
    assert ledger.balance_of(client_id=client.pk) == 0 and topup_transactions() == 0


def test_signed_body_that_is_not_json_is_400(api_client, stub_stripe):
    r = deliver(api_client, "not json", sign("not json", WEBHOOK_SECRET))

    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_payload"


def test_webhook_without_a_secret_configured_is_503(api_client, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""

    r = deliver(api_client, "{}", sign("{}", "whsec_x"))

    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "payments_not_configured"


def test_completed_but_unpaid_session_waits_for_async_payment_succeeded(api_client, opened):
    client, topup, session = opened
    unpaid = event("checkout.session.completed", session, status="complete", payment_status="unpaid")
    assert deliver(api_client, unpaid, sign(unpaid, WEBHOOK_SECRET)).json()["handled"] is False
    assert ledger.balance_of(client_id=client.pk) == 0

    later = event("checkout.session.async_payment_succeeded", session, status="complete", payment_status="paid")
    assert deliver(api_client, later, sign(later, WEBHOOK_SECRET)).json()["handled"] is True

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED and ledger.balance_of(client_id=client.pk) == Decimal("40")


def test_async_payment_failed_marks_the_topup_failed(api_client, opened):
    client, topup, session = opened
    payload = event("checkout.session.async_payment_failed", session, status="complete", payment_status="unpaid")

    assert deliver(api_client, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.FAILED and ledger.balance_of(client_id=client.pk) == 0


def test_expired_session_marks_the_topup_expired(api_client, opened):
    _, topup, session = opened
    payload = event("checkout.session.expired", session, status="expired")

    assert deliver(api_client, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.EXPIRED


def test_expired_arriving_after_the_payment_does_not_undo_it(api_client, opened):
    client, topup, session = opened
    for payload in (paid(session), event("checkout.session.expired", session, status="expired")):
        assert deliver(api_client, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED and ledger.balance_of(client_id=client.pk) == Decimal("40")


@pytest.mark.parametrize(
    ("closing", "extra"),
    [
        ("checkout.session.expired", {"status": "expired"}),
        ("checkout.session.async_payment_failed", {"status": "complete", "payment_status": "unpaid"}),
    ],
    ids=["after expired", "after failed"],
)
def test_payment_after_expired_still_credits(api_client, opened, closing, extra):
    client, topup, session = opened
    closed = event(closing, session, **extra)
    assert deliver(api_client, closed, sign(closed, WEBHOOK_SECRET)).json()["handled"] is True
    topup.refresh_from_db()
    assert topup.status != TopUpStatus.PENDING and ledger.balance_of(client_id=client.pk) == 0

    # The money did arrive after all (events come in any order): credited once, however often it is delivered.
    payment = paid(session)
    first = deliver(api_client, payment, sign(payment, WEBHOOK_SECRET))
    again = deliver(api_client, payment, sign(payment, WEBHOOK_SECRET))
    late = deliver(api_client, closed, sign(closed, WEBHOOK_SECRET))  # the closing event delivered again

    assert first.json()["handled"] is True and again.json()["handled"] is False and late.json()["handled"] is False
    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED and topup.completed_at is not None
    assert ledger.balance_of(client_id=client.pk) == Decimal("40")
    assert topup_transactions() == 1
    assert account_sum(LedgerAccountKind.STRIPE_CLEARING) == Decimal("-40")
    assert_books_balanced()


def test_a_session_whose_amount_differs_from_the_topup_is_not_credited(api_client, opened):
    client, _topup, session = opened
    payload = event("checkout.session.completed", session, payment_status="paid", amount_total=400000)

    assert deliver(api_client, payload, sign(payload, WEBHOOK_SECRET)).json()["handled"] is False
    assert ledger.balance_of(client_id=client.pk) == 0


@pytest.mark.parametrize("kind", ["payment_intent.succeeded", "customer.created", "checkout.session.completed"])
def test_other_events_and_unknown_sessions_are_200_and_ignored(api_client, stub_stripe, kind):
    foreign = {"id": "cs_test_elsewhere", "object": "checkout.session", "metadata": {}, "payment_status": "paid",
               "amount_total": 1000, "currency": "usd", "client_reference_id": None}  # fmt: skip
    payload = event(kind, foreign)

    r = deliver(api_client, payload, sign(payload, WEBHOOK_SECRET))

    assert r.status_code == 200 and r.json() == {"received": True, "handled": False}
    assert topup_transactions() == 0


@pytest.mark.parametrize("reference", ["99999999999999999999999", "-3", "order-17", None])
def test_sessions_naming_no_topup_of_ours_are_ignored(api_client, stub_stripe, reference):
    foreign = {
        "id": "cs_test_other",
        "object": "checkout.session",
        "metadata": {"topup_id": reference},
        "payment_status": "paid",
        "amount_total": 1000,
        "currency": "usd",
        "client_reference_id": reference,
    }
    payload = event("checkout.session.completed", foreign)

    r = deliver(api_client, payload, sign(payload, WEBHOOK_SECRET))

    assert r.status_code == 200 and r.json()["handled"] is False
