"""Money over HTTP: GET /api/v1/client/ledger/ and POST /api/v1/client/list/{id}/credit/ (API.md §1, §9)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from clients import ledger
from clients.models import Client, LedgerTransaction
from core.models import IdempotencyRecord
from tests.clients.helpers import detail_url, error_attrs, the_error
from tests.conftest import bearer

LEDGER_URL = "/api/v1/client/ledger/"


def credit_url(client_id: int) -> str:
    return f"{detail_url(client_id)}credit/"


def balance(client: Client) -> Decimal:
    return ledger.balance_of(client_id=client.pk)


@pytest.fixture
def funded(user_client, provider):  # type: ignore[no-untyped-def]
    """A user with 100 credited, 30 held for `inference:1` and 10 of it charged, paid to the provider."""
    client, raw = user_client
    ledger.credit(client_id=client.pk, amount=Decimal("100"), key="fund", memo="welcome credit")
    ledger.hold_place(client_id=client.pk, amount=Decimal("30"), key="job-1", ref="inference:1", memo="job 1")
    ledger.hold_settle(
        key="job-1", charge=Decimal("10"), kind="inference", operator_id=provider[0].pk, memo="job 1 done"
    )
    return client, raw


# --- GET ledger/ --------------------------------------------------------------------------------------------


def test_ledger_lists_the_callers_own_entries_newest_first_with_signed_amounts(api_client, funded):
    # API.md §10: the charge is its own line, minus exactly the charge, with its kind and ref (contract changed:
    # a settle used to show one netted line of +20 and leave the client to subtract).
    client, raw = funded

    r = api_client.get(LEDGER_URL, **bearer(raw))

    assert r.status_code == 200
    rows = r.json()["results"]
    assert [(e["kind"], e["amount"], e["ref"], e["memo"]) for e in rows] == [
        ("inference", "-10.000000", "inference:1", "job 1 done"),
        ("release", "30.000000", "inference:1", "job 1 done"),
        ("hold", "-30.000000", "inference:1", "job 1"),
        ("credit", "100.000000", None, "welcome credit"),
    ]
    assert {e["account"] for e in rows} == {"client"}
    assert {e["client"] for e in rows} == {client.pk}
    assert set(rows[0]) == {"id", "transaction", "kind", "ref", "memo", "account", "client", "amount", "created_at"}
    assert sum(Decimal(e["amount"]) for e in rows) == balance(client) == Decimal("90")


def test_ledger_filters_by_ref(api_client, funded):
    _, raw = funded

    rows = api_client.get(LEDGER_URL, {"ref": "inference:1", "kind": "inference"}, **bearer(raw)).json()["results"]

    assert [(e["kind"], e["amount"]) for e in rows] == [("inference", "-10.000000")]


def test_ledger_shows_the_operator_only_its_earnings(api_client, funded, provider):
    _, raw = provider

    r = api_client.get(LEDGER_URL, **bearer(raw))

    assert [(e["kind"], e["amount"], e["ref"]) for e in r.json()["results"]] == [
        ("inference", "7.000000", "inference:1")
    ]


def test_ledger_never_shows_another_clients_entries_even_when_asked(api_client, funded, other_user):
    client, _ = funded
    _, raw = other_user

    r = api_client.get(LEDGER_URL, {"client": client.pk}, **bearer(raw))

    assert r.status_code == 200
    assert r.json()["count"] == 0


def test_admin_sees_every_account_and_filters_by_client(api_client, funded, admin, provider):
    client, _ = funded
    _, admin_raw = admin

    everything = api_client.get(LEDGER_URL, {"page_size": 100}, **bearer(admin_raw)).json()
    one_client = api_client.get(LEDGER_URL, {"client": client.pk}, **bearer(admin_raw)).json()

    assert {e["account"] for e in everything["results"]} == {"client", "funding", "escrow", "platform", "treasury"}
    assert sum(Decimal(e["amount"]) for e in everything["results"]) == 0
    assert {e["client"] for e in one_client["results"]} == {client.pk}
    assert one_client["count"] == 4


def test_ledger_filters_by_kind_and_day_and_orders_by_amount(api_client, funded):
    _, raw = funded

    holds = api_client.get(LEDGER_URL, {"kind": "hold"}, **bearer(raw)).json()["results"]
    today = api_client.get(LEDGER_URL, {"date_from": "2000-01-01", "date_to": "2999-12-31"}, **bearer(raw)).json()
    before = api_client.get(LEDGER_URL, {"date_to": "2000-01-01"}, **bearer(raw)).json()
    ordered = api_client.get(LEDGER_URL, {"ordering": "amount"}, **bearer(raw)).json()["results"]

    assert [e["kind"] for e in holds] == ["hold"]
    assert today["count"] == 4
    assert before["count"] == 0
    assert [e["amount"] for e in ordered] == ["-30.000000", "-10.000000", "30.000000", "100.000000"]


def test_ledger_refuses_a_bad_day_naming_it(api_client, funded):
    _, raw = funded

    r = api_client.get(LEDGER_URL, {"date_from": "yesterday"}, **bearer(raw))

    assert r.status_code == 400
    assert error_attrs(r) == {"date_from"}


def test_anonymous_cannot_read_a_ledger(api_client, funded):
    assert api_client.get(LEDGER_URL).status_code == 401


# --- POST list/{id}/credit/ --------------------------------------------------------------------------------------


def test_admin_credit_adds_to_the_balance_and_returns_the_client(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin

    r = api_client.post(credit_url(client.pk), {"amount": "25.50", "memo": "refund of ticket 7"}, **bearer(admin_raw))

    assert r.status_code == 200
    assert r.json()["id"] == client.pk
    assert r.json()["balance"] == "25.500000"
    assert balance(client) == Decimal("25.5")
    txn = LedgerTransaction.objects.get(kind="credit")
    assert txn.memo == "refund of ticket 7"
    assert ledger.reconcile() == []


def test_a_client_cannot_credit_itself(api_client, user_client):
    client, raw = user_client

    r = api_client.post(credit_url(client.pk), {"amount": "25"}, **bearer(raw))

    assert r.status_code == 403
    assert balance(client) == 0


def test_anonymous_cannot_credit(api_client, user_client):
    client, _ = user_client

    r = api_client.post(credit_url(client.pk), {"amount": "25"})

    assert r.status_code == 401
    assert balance(client) == 0


def test_crediting_an_unknown_client_is_404(api_client, admin):
    _, admin_raw = admin

    r = api_client.post(credit_url(999999), {"amount": "25"}, **bearer(admin_raw))

    assert r.status_code == 404
    assert not LedgerTransaction.objects.exists()


@pytest.mark.parametrize(
    "amount",
    ["-5", "0", "0.000000", "abc", "1.0000001", "1000000.000001", "1e400", "NaN", "", 25.5, 25, None, True],
)
def test_credit_refuses_a_bad_amount_naming_it(api_client, admin, user_client, amount):
    client, _ = user_client
    _, admin_raw = admin

    r = api_client.post(credit_url(client.pk), {"amount": amount}, **bearer(admin_raw))

    assert r.status_code == 400
    assert error_attrs(r) == {"amount"}
    assert balance(client) == 0


def test_credit_accepts_the_smallest_and_the_largest_amounts(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin

    small = api_client.post(credit_url(client.pk), {"amount": "0.000001"}, **bearer(admin_raw))
    large = api_client.post(credit_url(client.pk), {"amount": "1000000"}, **bearer(admin_raw))

    assert (small.status_code, large.status_code) == (200, 200)
    assert balance(client) == Decimal("1000000.000001")


def test_credit_refuses_unknown_fields(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin

    r = api_client.post(credit_url(client.pk), {"amount": "5", "balance": "1000"}, **bearer(admin_raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "balance"


# --- Idempotency-Key -----------------------------------------------------------------------------------------


def test_a_retried_credit_with_the_same_key_and_body_credits_once_and_replays_the_response(
    api_client, admin, user_client
):
    client, _ = user_client
    _, admin_raw = admin
    headers = {**bearer(admin_raw), "HTTP_IDEMPOTENCY_KEY": "5b7c8a1e-credit-1"}

    first = api_client.post(credit_url(client.pk), {"amount": "10", "memo": "m"}, **headers)
    ledger.credit(
        client_id=client.pk, amount=Decimal("1"), key="meanwhile"
    )  # the replay is the first answer, not today's
    again = api_client.post(credit_url(client.pk), {"memo": "m", "amount": "10"}, **headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["balance"] == "10.000000"
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert balance(client) == Decimal("11")
    assert LedgerTransaction.objects.filter(kind="credit").count() == 2


def test_the_same_key_with_another_body_is_422_and_credits_nothing(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin
    headers = {**bearer(admin_raw), "HTTP_IDEMPOTENCY_KEY": "credit-2"}
    api_client.post(credit_url(client.pk), {"amount": "10"}, **headers)

    r = api_client.post(credit_url(client.pk), {"amount": "11"}, **headers)

    assert r.status_code == 422
    assert the_error(r)["code"] == "idempotency_key_reused"
    assert balance(client) == Decimal("10")


def test_the_same_key_on_another_client_is_a_separate_request(api_client, admin, user_client, other_user):
    _, admin_raw = admin
    headers = {**bearer(admin_raw), "HTTP_IDEMPOTENCY_KEY": "credit-3"}

    api_client.post(credit_url(user_client[0].pk), {"amount": "10"}, **headers)
    api_client.post(credit_url(other_user[0].pk), {"amount": "10"}, **headers)

    assert balance(user_client[0]) == balance(other_user[0]) == Decimal("10")


def test_a_failed_request_stores_nothing_so_its_corrected_retry_runs(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin
    headers = {**bearer(admin_raw), "HTTP_IDEMPOTENCY_KEY": "credit-4"}

    bad = api_client.post(credit_url(client.pk), {"amount": "-1"}, **headers)
    good = api_client.post(credit_url(client.pk), {"amount": "1"}, **headers)

    assert (bad.status_code, good.status_code) == (400, 200)
    assert balance(client) == Decimal("1")


def test_without_a_key_each_credit_counts(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin

    for _ in range(2):
        api_client.post(credit_url(client.pk), {"amount": "10"}, **bearer(admin_raw))

    assert balance(client) == Decimal("20")
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_malformed_idempotency_key_is_400(api_client, admin, user_client, key):
    client, _ = user_client
    _, admin_raw = admin

    r = api_client.post(credit_url(client.pk), {"amount": "1"}, **bearer(admin_raw), HTTP_IDEMPOTENCY_KEY=key)

    assert r.status_code == 400
    assert the_error(r)["code"] == "invalid_idempotency_key"
    assert balance(client) == 0


def test_a_retry_that_takes_over_a_crashed_credit_does_not_credit_twice(api_client, admin, user_client):
    client, _ = user_client
    _, admin_raw = admin
    body = {"amount": "10"}
    # The first attempt claimed the key and committed its credit, then died before storing its response.
    api_client.post(credit_url(client.pk), body, **bearer(admin_raw), HTTP_IDEMPOTENCY_KEY="crash")
    record = IdempotencyRecord.objects.get(key="crash")
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=None, response_body=None, started_at=timezone.now() - timedelta(minutes=10)
    )

    r = api_client.post(credit_url(client.pk), body, **bearer(admin_raw), HTTP_IDEMPOTENCY_KEY="crash")

    assert r.status_code == 200
    assert r.json()["balance"] == "10.000000"
    assert balance(client) == Decimal("10")
    assert LedgerTransaction.objects.filter(kind="credit").count() == 1
