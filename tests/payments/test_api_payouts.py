"""/api/v1/client/payouts/: an approved provider asks, the amount is held; an admin approves (paid) or rejects."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind, LedgerTransactionKind
from clients.models import Hold, LedgerTransaction
from payments.choices import PayoutStatus
from payments.models import Payout
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.conftest import bearer
from tests.factories import make_client

URL = "/api/v1/client/payouts/"


@pytest.fixture
def earner(provider):  # type: ignore[no-untyped-def]
    """An approved provider with 50.00 earned."""
    client, key = provider
    ledger.credit(client_id=client.pk, amount=Decimal("50"), key="earned")
    return client, key


def request_payout(api_client, key: str, amount: str):  # type: ignore[no-untyped-def]
    return api_client.post(URL, {"amount": amount}, format="json", **bearer(key))


def test_provider_payout_request_holds_the_amount(api_client, earner):
    client, key = earner

    r = request_payout(api_client, key, "30.5")

    assert r.status_code == 201, r.json()
    assert r.json()["amount"] == "30.500000" and r.json()["status"] == "pending"
    payout = Payout.objects.get(pk=r.json()["id"])
    assert ledger.balance_of(client_id=client.pk) == Decimal("19.5")
    hold = Hold.objects.get(key=f"payout:{payout.pk}")
    assert hold.status == HoldStatus.HELD and hold.amount == Decimal("30.5")
    assert_books_balanced()


def test_admin_approves_a_payout_and_the_money_leaves_the_books(api_client, earner, admin):
    client, key = earner
    payout_id = request_payout(api_client, key, "30").json()["id"]

    r = api_client.post(f"{URL}{payout_id}/approve/", {"reference": "SEPA-2026-001"}, format="json", **bearer(admin[1]))

    assert r.status_code == 200, r.json()
    assert r.json()["status"] == "paid" and r.json()["reference"] == "SEPA-2026-001"
    assert ledger.balance_of(client_id=client.pk) == Decimal("20")
    assert Hold.objects.get(key=f"payout:{payout_id}").status == HoldStatus.SETTLED
    [txn] = LedgerTransaction.objects.filter(kind=LedgerTransactionKind.PAYOUT)
    assert txn.key == f"payout:payout:{payout_id}"
    assert account_sum(LedgerAccountKind.PAYOUTS) == Decimal("30")
    assert account_sum(LedgerAccountKind.ESCROW) == 0
    assert_books_balanced()
    lines = api_client.get(f"/api/v1/client/ledger/?ref=payout:{payout_id}&ordering=id", **bearer(key))
    assert [(e["kind"], e["amount"]) for e in lines.json()["results"]] == [
        ("hold", "-30.000000"),
        ("release", "30.000000"),
        ("payout", "-30.000000"),
    ]


def test_admin_rejects_a_payout_and_the_hold_is_released(api_client, earner, admin):
    client, key = earner
    payout_id = request_payout(api_client, key, "30").json()["id"]

    r = api_client.post(f"{URL}{payout_id}/reject/", {"reference": "wrong IBAN"}, format="json", **bearer(admin[1]))

    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert ledger.balance_of(client_id=client.pk) == Decimal("50")
    assert Hold.objects.get(key=f"payout:{payout_id}").status == HoldStatus.RELEASED
    assert not LedgerTransaction.objects.filter(kind=LedgerTransactionKind.PAYOUT).exists()
    assert_books_balanced()


def test_a_decided_payout_cannot_be_decided_again(api_client, earner, admin):
    payout_id = request_payout(api_client, earner[1], "30").json()["id"]
    ok = api_client.post(f"{URL}{payout_id}/approve/", {"reference": "r1"}, format="json", **bearer(admin[1]))
    assert ok.status_code == 200

    for verb, body in (("approve", {"reference": "r2"}), ("reject", {})):
        r = api_client.post(f"{URL}{payout_id}/{verb}/", body, format="json", **bearer(admin[1]))
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "payout_not_pending"
    assert ledger.balance_of(client_id=earner[0].pk) == Decimal("20")
    assert_books_balanced()


def test_approve_needs_a_reference(api_client, earner, admin):
    payout_id = request_payout(api_client, earner[1], "30").json()["id"]

    r = api_client.post(f"{URL}{payout_id}/approve/", {}, format="json", **bearer(admin[1]))

    assert r.status_code == 400 and r.json()["errors"][0]["attr"] == "reference"
    assert Payout.objects.get(pk=payout_id).status == PayoutStatus.PENDING


def test_an_admin_cannot_approve_its_own_payout(api_client, admin):
    client, key = admin
    ledger.credit(client_id=client.pk, amount=Decimal("50"), key="admin-earned")
    payout_id = request_payout(api_client, key, "20").json()["id"]

    r = api_client.post(f"{URL}{payout_id}/approve/", {"reference": "me"}, format="json", **bearer(key))

    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "cannot_approve_own_payout"
    assert Payout.objects.get(pk=payout_id).status == PayoutStatus.PENDING
    other_admin = make_client(staff=True)
    r = api_client.post(f"{URL}{payout_id}/approve/", {"reference": "4eyes"}, format="json", **bearer(other_admin[1]))
    assert r.status_code == 200 and r.json()["status"] == "paid"


def test_a_provider_cannot_approve_or_reject_payouts(api_client, earner):
    payout_id = request_payout(api_client, earner[1], "30").json()["id"]

    for verb in ("approve", "reject"):
        r = api_client.post(f"{URL}{payout_id}/{verb}/", {"reference": "x"}, format="json", **bearer(earner[1]))
        assert r.status_code == 403
    assert Payout.objects.get(pk=payout_id).status == PayoutStatus.PENDING


@pytest.mark.parametrize("amount", ["9.999999", "50.000001", "0", "-10", "abc", 20])
def test_payout_below_the_minimum_or_above_the_balance_is_400(api_client, earner, amount):
    r = request_payout(api_client, earner[1], amount)

    assert r.status_code == 400
    assert r.json()["errors"][0]["attr"] == "amount"
    assert not Payout.objects.exists() and ledger.balance_of(client_id=earner[0].pk) == Decimal("50")


def test_payout_minimum_follows_the_setting(api_client, earner, settings):
    settings.PAYOUT_MINIMUM = Decimal("40")

    assert request_payout(api_client, earner[1], "39").status_code == 400
    assert request_payout(api_client, earner[1], "40").status_code == 201


def test_plain_users_and_unapproved_applicants_cannot_request_payouts(api_client, user_client, applicant):
    for _, key in (user_client, applicant):
        assert request_payout(api_client, key, "10").status_code == 403
    assert api_client.post(URL, {"amount": "10"}, format="json").status_code == 401


def test_payouts_are_seen_by_their_owner_and_admins_only(api_client, earner, other_provider, admin):
    payout_id = request_payout(api_client, earner[1], "30").json()["id"]

    assert api_client.get(f"{URL}{payout_id}/", **bearer(earner[1])).status_code == 200
    assert api_client.get(f"{URL}{payout_id}/", **bearer(other_provider[1])).status_code == 404
    assert api_client.get(URL, **bearer(other_provider[1])).json()["count"] == 0
    assert api_client.get(f"{URL}{payout_id}/", **bearer(admin[1])).status_code == 200
    r = api_client.get(URL, {"status": "pending", "client": earner[0].pk}, **bearer(admin[1]))
    assert [p["id"] for p in r.json()["results"]] == [payout_id]
    assert api_client.get(f"{URL}{payout_id}/").status_code == 401
    missing = api_client.post(f"{URL}999999/approve/", {"reference": "x"}, format="json", **bearer(admin[1]))
    assert missing.status_code == 404


def test_admin_site_approves_with_a_reference_and_rejects(client, earner, admin):
    from tests.factories import PASSWORD

    admin_client, _ = admin
    first = Payout.objects.get(pk=request_payout_service(earner[0], "20"))
    second = Payout.objects.get(pk=request_payout_service(earner[0], "10"))
    client.login(username=admin_client.user.username, password=PASSWORD)
    changelist = "/admin/payments/payout/"

    r = client.post(changelist, {"action": "approve_payouts", "_selected_action": [first.pk], "reference": "WIRE-7"})
    assert r.status_code == 302
    r = client.post(changelist, {"action": "reject_payouts", "_selected_action": [second.pk], "reference": ""})
    assert r.status_code == 302

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.reference, first.decided_by_id) == (PayoutStatus.PAID, "WIRE-7", admin_client.user_id)
    assert second.status == PayoutStatus.REJECTED
    assert ledger.balance_of(client_id=earner[0].pk) == Decimal("30")
    assert_books_balanced()


def request_payout_service(client, amount: str) -> int:  # type: ignore[no-untyped-def]
    from payments import services

    return services.payout_request(client=client, amount=Decimal(amount)).pk


def test_a_payout_retried_with_its_idempotency_key_holds_once(api_client, earner):
    headers = {**bearer(earner[1]), "HTTP_IDEMPOTENCY_KEY": "payout-2026-12-06"}

    first = api_client.post(URL, {"amount": "20"}, format="json", **headers)
    again = api_client.post(URL, {"amount": "20"}, format="json", **headers)

    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Payout.objects.count() == 1 and ledger.balance_of(client_id=earner[0].pk) == Decimal("30")
