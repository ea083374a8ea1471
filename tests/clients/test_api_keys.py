from django.utils import timezone

from clients.models import ApiKey
from clients.services import api_key_create
from tests.clients.helpers import KEYS_URL, LIST_URL, the_error
from tests.conftest import bearer


def key_url(key_id: int) -> str:
    return f"{KEYS_URL}{key_id}/"


def masked(raw_key: str) -> str:
    return f"gmk_...{raw_key[-4:]}"


def test_keys_list_shows_only_own_active_keys_masked(api_client, user_client, other_user):
    client, raw = user_client
    _, laptop_raw = api_key_create(client=client, name="laptop")
    revoked, _ = api_key_create(client=client, name="old")
    revoked.revoked_at = timezone.now()
    revoked.save()

    r = api_client.get(KEYS_URL, **bearer(raw))

    assert r.status_code == 200
    listed = {k["name"]: k["key"] for k in r.json()["results"]}
    assert listed == {"test": masked(raw), "laptop": masked(laptop_raw)}


def test_creating_a_key_shows_it_in_full_once(api_client, user_client):
    client, raw = user_client

    created = api_client.post(KEYS_URL, {"name": "ci-runner"}, format="json", **bearer(raw))
    listed = api_client.get(KEYS_URL, **bearer(raw))

    assert created.status_code == 201
    full = created.json()["key"]
    assert full.startswith("gmk_")
    assert "..." not in full
    assert created.json()["name"] == "ci-runner"
    shown_later = {k["id"]: k["key"] for k in listed.json()["results"]}
    assert shown_later[created.json()["id"]] == masked(full)
    assert ApiKey.objects.get(pk=created.json()["id"]).client == client


def test_created_key_authenticates(api_client, user_client):
    client, raw = user_client
    full = api_client.post(KEYS_URL, {"name": "ci-runner"}, format="json", **bearer(raw)).json()["key"]

    r = api_client.get(LIST_URL, **bearer(full))

    assert r.status_code == 200
    assert r.json()["results"][0]["id"] == client.id


def test_key_name_longer_than_64_is_refused(api_client, user_client):
    client, raw = user_client

    r = api_client.post(KEYS_URL, {"name": "k" * 65}, format="json", **bearer(raw))

    assert r.status_code == 400
    error = the_error(r)
    assert (error["code"], error["attr"]) == ("max_length", "name")
    assert ApiKey.objects.filter(client=client).count() == 1


def test_key_without_a_name_is_refused(api_client, user_client):
    client, raw = user_client

    r = api_client.post(KEYS_URL, {}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "name"
    assert ApiKey.objects.filter(client=client).count() == 1


def test_key_creation_refuses_a_chosen_key(api_client, user_client):
    client, raw = user_client

    r = api_client.post(KEYS_URL, {"name": "mine", "key": "gmk_chosen-by-me"}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "key"
    assert ApiKey.objects.filter(client=client).count() == 1


def test_deleting_own_key_revokes_it(api_client, user_client):
    client, raw = user_client
    spare, spare_raw = api_key_create(client=client, name="spare")

    r = api_client.delete(key_url(spare.id), **bearer(raw))

    assert r.status_code == 204
    spare.refresh_from_db()
    assert spare.revoked_at is not None
    assert api_client.get(LIST_URL, **bearer(spare_raw)).status_code == 401
    assert api_client.get(LIST_URL, **bearer(raw)).status_code == 200


def test_deleting_another_clients_key_is_404(api_client, user_client, other_user):
    _, raw = user_client
    other, other_raw = other_user
    other_key = ApiKey.objects.get(client=other)

    r = api_client.delete(key_url(other_key.id), **bearer(raw))

    assert r.status_code == 404
    other_key.refresh_from_db()
    assert other_key.revoked_at is None
    assert api_client.get(LIST_URL, **bearer(other_raw)).status_code == 200


def test_deleting_an_already_revoked_key_is_404(api_client, user_client):
    client, raw = user_client
    spare, _ = api_key_create(client=client, name="spare")
    api_client.delete(key_url(spare.id), **bearer(raw))

    r = api_client.delete(key_url(spare.id), **bearer(raw))

    assert r.status_code == 404
