"""Fixtures for payments: a local stub of Stripe's API and of an x402 facilitator, both real HTTP servers."""

import pytest

WEBHOOK_SECRET = "whsec_test_" + "a1b2c3d4" * 4


@pytest.fixture
def stub_stripe(settings):  # type: ignore[no-untyped-def]
    """Stripe's API on 127.0.0.1, configured as this server's Stripe (keys and webhook secret set)."""
    from tests.support.stub_stripe import StubStripe

    stub = StubStripe().start()
    settings.STRIPE_SECRET_KEY = "sk_test_stub_0123456789"
    settings.STRIPE_API_BASE = stub.base_url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    yield stub
    stub.stop()


@pytest.fixture
def facilitator(settings):  # type: ignore[no-untyped-def]
    from tests.support.stub_facilitator import StubFacilitator

    stub = StubFacilitator().start()
    settings.X402_FACILITATOR_URL = stub.url
    settings.X402_PAY_TO = "0x" + "ab" * 20
    settings.X402_NETWORK = "base-sepolia"
    yield stub
    stub.stop()
