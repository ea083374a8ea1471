"""X402_FACILITATOR_HEADERS: a hosted facilitator's credentials, sent with verify and settle to a stub facilitator
that demands them (401 without)."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from clients import ledger
from config.settings.payments import _headers
from inference.models import InferenceRequest
from payments.models import X402Payer, X402Payment
from tests.clients.ledger_helpers import assert_books_balanced
from tests.payments.test_x402 import ask, node, pay, requirements  # noqa: F401 (node: a fixture)

KEY = {"Authorization": "Bearer fac-key-0123", "X-Api-Key": "k-42"}


def test_the_configured_headers_go_with_verify_and_settle(api_client, node, facilitator, settings):  # noqa: F811
    settings.X402_FACILITATOR_HEADERS = KEY
    facilitator.required_headers = KEY
    required = requirements(api_client)

    r = ask(api_client, payment=pay(required))

    assert r.status_code == 200, r.content
    assert [path for path, _ in facilitator.received] == ["/verify", "/settle"]
    for headers in facilitator.headers_received:
        assert headers["Authorization"] == KEY["Authorization"] and headers["X-Api-Key"] == KEY["X-Api-Key"]
    payer = X402Payer.objects.get()
    assert ledger.balance_of(client_id=payer.client_id) == Decimal(required["maxAmountRequired"]) / 10**6 - Decimal(
        "0.012"
    )
    assert_books_balanced()


def test_a_facilitator_refusing_our_credentials_is_502_and_nothing_is_served(
    api_client,
    node,  # noqa: F811
    facilitator,
    settings,
):
    settings.X402_FACILITATOR_HEADERS = {"Authorization": "Bearer wrong"}
    facilitator.required_headers = KEY
    required = requirements(api_client)

    r = ask(api_client, payment=pay(required))

    assert r.status_code == 502 and r.json()["error"]["code"] == "facilitator_unavailable"
    assert len(facilitator.received) == 1 and not node[1].chat_requests
    assert not X402Payment.objects.exists() and not InferenceRequest.objects.exists()


def test_facilitator_headers_setting_is_a_json_object_of_strings():
    assert _headers("") == {}
    assert _headers('{"Authorization": "Bearer x"}') == {"Authorization": "Bearer x"}
    for bad in ("not json", "[1]", '{"Authorization": 7}', '"Bearer x"'):
        with pytest.raises(ImproperlyConfigured, match="X402_FACILITATOR_HEADERS"):
            _headers(bad)
