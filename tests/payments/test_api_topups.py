"""POST/GET /api/v1/client/topups/: a Stripe Checkout Session per top-up, through the official library and a
local stub of Stripe's API."""

from decimal import Decimal

import pytest

from payments.choices import TopUpStatus
from payments.models import TopUp
from tests.conftest import bearer

URL = "/api/v1/client/topups/"


def test_topup_opens_a_checkout_session_with_the_topup_in_its_metadata(api_client, user_client, stub_stripe):
    client, key = user_client

    r = api_client.post(URL, {"amount": "25.50"}, format="json", **bearer(key))

    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["amount"] == "25.500000" and body["status"] == "pending"
    topup = TopUp.objects.get(pk=body["id"])
    assert topup.client == client and topup.stripe_session_id.startswith("cs_test_")
    assert body["checkout_url"] == stub_stripe.sessions[topup.stripe_session_id]["url"]
    [sent] = stub_stripe.requests
    assert sent.path == "/v1/checkout/sessions"
    assert sent.headers["Authorization"] == "Bearer sk_test_stub_0123456789"
    assert sent.headers["Idempotency-Key"] == f"topup:{topup.pk}"
    assert sent.form["metadata[topup_id]"] == str(topup.pk)
    assert sent.form["client_reference_id"] == str(topup.pk)
    assert sent.form["line_items[0][price_data][unit_amount]"] == "2550"
    assert sent.form["line_items[0][price_data][currency]"] == "usd"
    assert sent.form["mode"] == "payment"


@pytest.mark.parametrize("amount", ["4.99", "10000.01", "12.345", "-5", "abc", 20])
def test_topup_amount_outside_5_to_10000_whole_cents_is_400(api_client, user_client, stub_stripe, amount):
    r = api_client.post(URL, {"amount": amount}, format="json", **bearer(user_client[1]))

    assert r.status_code == 400
    assert r.json()["errors"][0]["attr"] == "amount"
    assert not TopUp.objects.exists() and not stub_stripe.requests


def test_topup_without_stripe_configured_is_503(api_client, user_client, settings):
    settings.STRIPE_SECRET_KEY = ""

    r = api_client.post(URL, {"amount": "20"}, format="json", **bearer(user_client[1]))

    assert r.status_code == 503
    assert r.json()["errors"][0]["code"] == "payments_not_configured"
    assert not TopUp.objects.exists()
    bad = api_client.post(URL, {"amount": "1"}, format="json", **bearer(user_client[1]))
    assert bad.status_code == 400 and bad.json()["errors"][0]["attr"] == "amount"


def test_topup_stripe_refusal_is_502_and_the_topup_failed(api_client, user_client, stub_stripe):
    stub_stripe.fail_with = (400, {"error": {"type": "invalid_request_error", "message": "Amount too small"}})

    r = api_client.post(URL, {"amount": "20"}, format="json", **bearer(user_client[1]))

    assert r.status_code == 502
    assert r.json()["errors"][0]["code"] == "payment_provider_error"
    assert TopUp.objects.get().status == TopUpStatus.FAILED


def test_topup_anonymous_is_401(api_client, stub_stripe):
    assert api_client.post(URL, {"amount": "20"}, format="json").status_code == 401
    assert api_client.get(URL).status_code == 401


def test_topups_list_own_only_and_filter_by_status(api_client, user_client, other_user):
    client, key = user_client
    mine = TopUp.objects.create(client=client, amount=Decimal("5"))
    TopUp.objects.create(client=client, amount=Decimal("7"), status=TopUpStatus.EXPIRED)
    TopUp.objects.create(client=other_user[0], amount=Decimal("9"))

    r = api_client.get(URL, {"status": "pending"}, **bearer(key))

    assert r.status_code == 200
    assert [t["id"] for t in r.json()["results"]] == [mine.pk]
    assert api_client.get(URL, **bearer(key)).json()["count"] == 2


def test_topup_detail_is_own_only(api_client, user_client, other_user, admin):
    theirs = TopUp.objects.create(client=other_user[0], amount=Decimal("9"))

    assert api_client.get(f"{URL}{theirs.pk}/", **bearer(user_client[1])).status_code == 404
    r = api_client.get(f"{URL}{theirs.pk}/", **bearer(other_user[1]))
    assert r.status_code == 200 and r.json()["amount"] == "9.000000"
    assert api_client.get(f"{URL}{theirs.pk}/", **bearer(admin[1])).status_code == 200


def test_a_topup_retried_with_its_idempotency_key_opens_one_session(api_client, user_client, stub_stripe):
    headers = {**bearer(user_client[1]), "HTTP_IDEMPOTENCY_KEY": "topup-2026-12-06"}

    first = api_client.post(URL, {"amount": "20"}, format="json", **headers)
    again = api_client.post(URL, {"amount": "20"}, format="json", **headers)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert TopUp.objects.count() == 1 and len(stub_stripe.requests) == 1
