import importlib

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections
from django.db.models.signals import pre_migrate
from rest_framework.test import APIClient

from clients.choices import ClientRole
from tests.factories import make_client


def _btree_gist(sender, using, **kwargs):  # type: ignore[no-untyped-def]
    """The test database is built from the models (--no-migrations), so the extension that rentals' migration
    installs (BtreeGistExtension, for the exclusion constraint) is installed here before the tables are created."""
    with connections[using].cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")


pre_migrate.connect(_btree_gist, dispatch_uid="tests.btree_gist")


@pytest.fixture(autouse=True)
def _postgres_only(db):  # type: ignore[no-untyped-def]
    """The suite's guarantees (row locks, constraints) are PostgreSQL's: refuse to pass on anything else."""
    assert connection.vendor == "postgresql", "tests must run on PostgreSQL"


@pytest.fixture(autouse=True)
def _clear_cache():  # type: ignore[no-untyped-def]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_key_counters():  # type: ignore[no-untyped-def]
    """API keys' Redis counters (rpm, tpm, spend) of earlier tests and runs are gone: key ids are reused after the
    test database is rebuilt, and a stale spend counter would stand for the new key's spend."""
    if settings.KEY_LIMITS_REDIS_URL:
        client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
        names = list(client.scan_iter("gm:keylim:*"))
        if names:
            client.delete(*names)
        client.close()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def bearer(raw_key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


@pytest.fixture
def user_client(db):  # type: ignore[no-untyped-def]
    """(client, raw key) of a plain user."""
    return make_client()


@pytest.fixture
def other_user(db):  # type: ignore[no-untyped-def]
    return make_client()


@pytest.fixture
def applicant(db):  # type: ignore[no-untyped-def]
    """A client that applied to be a provider and is not yet approved."""
    return make_client(role=ClientRole.GPU_PROVIDER, approved=False)


@pytest.fixture
def provider(db):  # type: ignore[no-untyped-def]
    """An approved GPU provider."""
    return make_client(role=ClientRole.GPU_PROVIDER, approved=True)


@pytest.fixture
def other_provider(db):  # type: ignore[no-untyped-def]
    return make_client(role=ClientRole.GPU_PROVIDER, approved=True)


@pytest.fixture
def admin(db):  # type: ignore[no-untyped-def]
    return make_client(staff=True)


@pytest.fixture
def private_endpoints(settings):  # type: ignore[no-untyped-def]
    """Let nodes live on 127.0.0.1, as stub nodes started by tests do."""
    settings.ALLOW_PRIVATE_NODE_ENDPOINTS = True


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """The test database is built from the models (--no-migrations), so add the ledger's triggers by hand: the
    exact SQL of their migrations (clients/migrations/0003_ledger_triggers.py, then 0008's version of the balance
    check), which is idempotent."""
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for migration in ("0003_ledger_triggers", "0008_ledger_balance_checked_once"):
            cursor.execute(importlib.import_module(f"clients.migrations.{migration}").FORWARD_SQL)


@pytest.fixture
def stub_node_factory():  # type: ignore[no-untyped-def]
    """Start real OpenAI-compatible stub nodes on 127.0.0.1 (tests/support/stub_node.py); all stop at teardown."""
    from tests.support.stub_node import StubNode

    started: list[StubNode] = []

    def start(name: str = "stub") -> StubNode:
        node = StubNode(name).start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def stub_node(stub_node_factory):  # type: ignore[no-untyped-def]
    return stub_node_factory()
