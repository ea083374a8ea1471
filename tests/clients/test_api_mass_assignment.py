"""Server-owned fields cannot be written by anyone: naming one is a 400 and nothing changes (API.md §0)."""

import pytest
from django.forms.models import model_to_dict

from clients.models import ApiKey, Client
from tests.clients.helpers import LIST_URL, detail_url, error_attrs, the_error
from tests.conftest import bearer

SERVER_OWNED = [
    ("role", "admin"),
    ("is_gpu_provider_approved", True),
    ("balance", "1000000.000000"),
    ("provider_registration_date", "2020-01-01T00:00:00Z"),
    ("user_token", "gmk_chosen-by-the-caller"),
    ("ip", "203.0.113.99"),
    ("id", 999999),
]


def snapshot(client: Client) -> dict:
    client.refresh_from_db()
    client.user.refresh_from_db()
    keys = list(ApiKey.objects.filter(client=client).values_list("digest", "revoked_at"))
    return {"client": model_to_dict(client), "username": client.user.username, "keys": keys}


@pytest.mark.parametrize(("field", "value"), SERVER_OWNED)
def test_patch_naming_a_server_owned_field_is_refused(api_client, user_client, field, value):
    client, raw = user_client
    before = snapshot(client)

    r = api_client.patch(detail_url(client.id), {field: value, "phone_no": "555-0100"}, format="json", **bearer(raw))

    assert r.status_code == 400
    error = the_error(r)
    assert (error["code"], error["attr"]) == ("read_only_field", field)
    assert snapshot(client) == before


@pytest.mark.parametrize(("field", "value"), SERVER_OWNED)
def test_put_naming_a_server_owned_field_is_refused(api_client, user_client, field, value):
    client, raw = user_client
    before = snapshot(client)
    body = {"user": {"username": "put-name", "email": "put@example.com"}, field: value}

    r = api_client.put(detail_url(client.id), body, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == field
    assert snapshot(client) == before


@pytest.mark.parametrize(("field", "value"), SERVER_OWNED)
def test_admin_create_naming_a_server_owned_field_is_refused(api_client, admin, field, value):
    _, raw = admin
    clients = Client.objects.count()
    body = {"user": {"username": "newcomer", "email": "newcomer@example.com"}, field: value}

    r = api_client.post(LIST_URL, body, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == field
    assert Client.objects.count() == clients


def test_even_an_admin_cannot_write_a_server_owned_field(api_client, admin, applicant):
    _, raw = admin
    client, _ = applicant
    before = snapshot(client)

    r = api_client.patch(detail_url(client.id), {"is_gpu_provider_approved": True}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "is_gpu_provider_approved"
    assert snapshot(client) == before


def test_nested_user_id_is_refused(api_client, user_client, other_user):
    client, raw = user_client
    other, _ = other_user
    before = snapshot(client)

    r = api_client.patch(
        detail_url(client.id), {"user": {"id": other.user.id, "username": "x"}}, format="json", **bearer(raw)
    )

    assert r.status_code == 400
    assert the_error(r)["attr"] == "user.id"
    assert snapshot(client) == before


def test_every_refused_field_is_named(api_client, user_client):
    client, raw = user_client

    r = api_client.patch(detail_url(client.id), {"role": "admin", "balance": "5"}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert error_attrs(r) == {"role", "balance"}
