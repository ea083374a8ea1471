from clients.models import ApiKey
from clients.services import api_key_create
from tests.clients.helpers import LIST_URL
from tests.conftest import bearer
from tests.factories import PASSWORD

URL = "/api/v1/client/logout/"


def test_logout_revokes_the_key_used(api_client, user_client):
    client, raw = user_client

    r = api_client.post(URL, **bearer(raw))

    assert r.status_code == 200
    assert ApiKey.objects.get(client=client).revoked_at is not None
    assert api_client.get(LIST_URL, **bearer(raw)).status_code == 401


def test_logout_leaves_other_keys_of_the_client_working(api_client, user_client):
    client, raw = user_client
    other_key, other_raw = api_key_create(client=client, name="phone")

    api_client.post(URL, **bearer(raw))

    other_key.refresh_from_db()
    assert other_key.revoked_at is None
    assert api_client.get(LIST_URL, **bearer(other_raw)).status_code == 200


def test_logout_of_a_session_ends_it_and_revokes_no_key(api_client, user_client):
    client, raw = user_client
    assert api_client.login(username=client.user.username, password=PASSWORD)

    r = api_client.post(URL)

    assert r.status_code == 200
    assert api_client.get(LIST_URL).status_code == 401
    assert api_client.get(LIST_URL, **bearer(raw)).status_code == 200


def test_anonymous_logout_is_401(api_client):
    r = api_client.post(URL)

    assert r.status_code == 401
