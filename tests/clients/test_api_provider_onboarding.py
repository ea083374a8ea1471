from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth import get_user_model

from clients.choices import ClientRole
from clients.models import Client
from tests.clients.helpers import LIST_URL, detail_url, the_error
from tests.conftest import bearer
from tests.factories import make_client, make_node

User = get_user_model()

NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


def apply_url(client_id: int) -> str:
    return f"{detail_url(client_id)}apply-provider/"


def approve_url(client_id: int) -> str:
    return f"{detail_url(client_id)}approve-provider/"


def revoke_url(client_id: int) -> str:
    return f"{detail_url(client_id)}revoke-provider/"


def provider_state(client: Client) -> tuple:
    client.refresh_from_db()
    return client.role, client.is_gpu_provider_approved, client.provider_registration_date


# --- Applying ----------------------------------------------------------------------------------------


def test_apply_provider_makes_an_unapproved_provider_dated_now(api_client, user_client):
    client, raw = user_client

    with time_machine.travel(NOW, tick=False):
        r = api_client.post(apply_url(client.id), **bearer(raw))

    assert r.status_code == 200
    assert r.json()["role"] == "gpu_provider"
    assert r.json()["is_gpu_provider_approved"] is False
    assert provider_state(client) == (ClientRole.GPU_PROVIDER, False, NOW)


def test_provider_registration_date_is_null_until_applying(api_client, user_client):
    client, raw = user_client

    r = api_client.get(detail_url(client.id), **bearer(raw))

    assert r.json()["provider_registration_date"] is None


def test_approved_provider_reapplying_keeps_its_approval(api_client, provider):
    client, raw = provider
    before = provider_state(client)

    r = api_client.post(apply_url(client.id), **bearer(raw))

    assert r.status_code == 200
    assert provider_state(client) == before


def test_applying_for_another_client_is_404(api_client, user_client, other_user):
    _, raw = user_client
    other, _ = other_user

    r = api_client.post(apply_url(other.id), **bearer(raw))

    assert r.status_code == 404
    assert provider_state(other) == (ClientRole.USER, False, None)


def test_admin_cannot_apply_to_be_a_provider(api_client, admin):
    client, raw = admin

    r = api_client.post(apply_url(client.id), **bearer(raw))

    assert r.status_code == 409
    assert the_error(r)["code"] == "not_a_provider_applicant"
    assert provider_state(client) == (ClientRole.ADMIN, False, None)


# --- Approving and revoking --------------------------------------------------------------------------


def test_admin_approves_an_applicant(api_client, admin, applicant):
    _, raw = admin
    client, _ = applicant

    r = api_client.post(approve_url(client.id), **bearer(raw))

    assert r.status_code == 200
    assert r.json()["is_gpu_provider_approved"] is True
    client.refresh_from_db()
    assert client.is_approved_provider


def test_admin_revokes_a_provider(api_client, admin, provider):
    _, raw = admin
    client, _ = provider

    r = api_client.post(revoke_url(client.id), **bearer(raw))

    assert r.status_code == 200
    assert r.json()["is_gpu_provider_approved"] is False
    client.refresh_from_db()
    assert (client.role, client.is_gpu_provider_approved) == (ClientRole.GPU_PROVIDER, False)


def test_approving_a_client_that_never_applied_is_409(api_client, admin, user_client):
    _, raw = admin
    client, _ = user_client

    r = api_client.post(approve_url(client.id), **bearer(raw))

    assert r.status_code == 409
    assert the_error(r)["code"] == "not_a_provider_applicant"
    assert provider_state(client) == (ClientRole.USER, False, None)


def test_revoking_a_client_that_is_no_provider_is_409(api_client, admin, user_client):
    _, raw = admin
    client, _ = user_client

    r = api_client.post(revoke_url(client.id), **bearer(raw))

    assert r.status_code == 409
    assert the_error(r)["code"] == "not_a_provider_applicant"


def test_approving_a_missing_client_is_404(api_client, admin):
    _, raw = admin

    r = api_client.post(approve_url(Client.objects.order_by("-id").first().id + 1000), **bearer(raw))

    assert r.status_code == 404


@pytest.mark.parametrize("actor", ["applicant", "provider"])
def test_provider_cannot_approve_or_revoke_itself(api_client, request, actor):
    client, raw = request.getfixturevalue(actor)
    before = provider_state(client)

    approve = api_client.post(approve_url(client.id), **bearer(raw))
    revoke = api_client.post(revoke_url(client.id), **bearer(raw))

    assert (approve.status_code, revoke.status_code) == (403, 403)
    assert provider_state(client) == before


def test_user_cannot_approve_itself(api_client, user_client):
    client, raw = user_client

    r = api_client.post(approve_url(client.id), **bearer(raw))

    assert r.status_code == 403
    assert provider_state(client) == (ClientRole.USER, False, None)


# --- Who may do what ---------------------------------------------------------------------------------

ACTORS = ["anonymous", "user", "unapproved_provider", "approved_provider", "node_token", "admin"]
EXPECTED = {
    # actor: (approve-provider, revoke-provider, POST list/)
    "anonymous": (401, 401, 401),
    "user": (403, 403, 403),
    "unapproved_provider": (403, 403, 403),
    "approved_provider": (403, 403, 403),
    "node_token": (401, 401, 401),
    "admin": (200, 200, 201),
}


def credentials(actor: str) -> dict[str, str]:
    if actor == "anonymous":
        return {}
    if actor == "node_token":
        owner, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
        _, node_token = make_node(owner=owner)
        return bearer(node_token)
    role, approved, staff = {
        "user": (ClientRole.USER, False, False),
        "unapproved_provider": (ClientRole.GPU_PROVIDER, False, False),
        "approved_provider": (ClientRole.GPU_PROVIDER, True, False),
        "admin": (ClientRole.ADMIN, False, True),
    }[actor]
    _, raw = make_client(role=role, approved=approved, staff=staff)
    return bearer(raw)


@pytest.mark.parametrize("actor", ACTORS)
def test_only_admin_approves_providers(api_client, actor):
    target, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=False)

    r = api_client.post(approve_url(target.id), **credentials(actor))

    assert r.status_code == EXPECTED[actor][0]
    target.refresh_from_db()
    assert target.is_gpu_provider_approved is (r.status_code == 200)


@pytest.mark.parametrize("actor", ACTORS)
def test_only_admin_revokes_providers(api_client, actor):
    target, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)

    r = api_client.post(revoke_url(target.id), **credentials(actor))

    assert r.status_code == EXPECTED[actor][1]
    target.refresh_from_db()
    assert target.is_gpu_provider_approved is (r.status_code != 200)


@pytest.mark.parametrize("actor", ACTORS)
def test_only_admin_creates_clients(api_client, actor):
    body = {"user": {"username": "created-here", "email": "created-here@example.com"}}

    r = api_client.post(LIST_URL, body, format="json", **credentials(actor))

    assert r.status_code == EXPECTED[actor][2]
    assert User.objects.filter(username="created-here").exists() is (r.status_code == 201)


def test_node_token_is_refused_on_a_client_endpoint(api_client, provider):
    owner, _ = provider
    _, node_token = make_node(owner=owner)

    r = api_client.get(LIST_URL, **bearer(node_token))

    assert r.status_code == 401
    assert the_error(r)["code"] == "invalid_api_key"
