import base64
from datetime import timedelta

import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from clients.models import ApiKey
from tests.clients.helpers import KEYS_URL, LIST_URL, the_error
from tests.conftest import bearer
from tests.factories import PASSWORD


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def test_basic_auth_with_username_and_password_works(api_client, user_client):
    client, _ = user_client

    r = api_client.get(LIST_URL, **basic(client.user.username, PASSWORD))

    assert r.status_code == 200
    assert [c["id"] for c in r.json()["results"]] == [client.id]


def test_basic_auth_with_a_wrong_password_is_401(api_client, user_client):
    client, _ = user_client

    r = api_client.get(LIST_URL, **basic(client.user.username, "not-the-password"))

    assert r.status_code == 401


def test_session_auth_works(api_client, user_client):
    client, _ = user_client
    assert api_client.login(username=client.user.username, password=PASSWORD)

    r = api_client.get(LIST_URL)

    assert r.status_code == 200
    assert [c["id"] for c in r.json()["results"]] == [client.id]


def test_unknown_bearer_token_is_401_with_www_authenticate(api_client, user_client):
    r = api_client.get(LIST_URL, **bearer("gmk_this-key-was-never-issued"))

    assert r.status_code == 401
    assert the_error(r)["code"] == "invalid_api_key"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_credentials_answer_401_with_www_authenticate(api_client):
    r = api_client.get(LIST_URL)

    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_malformed_bearer_header_is_401(api_client, user_client):
    _, raw = user_client

    r = api_client.get(LIST_URL, HTTP_AUTHORIZATION=f"Bearer {raw} extra")

    assert r.status_code == 401


def test_key_of_a_deactivated_user_is_401(api_client, user_client):
    client, raw = user_client
    client.user.is_active = False
    client.user.save()

    r = api_client.get(LIST_URL, **bearer(raw))

    assert r.status_code == 401


def test_using_a_key_records_when_it_was_last_used(api_client, user_client):
    client, raw = user_client
    later = timezone.now() + timedelta(hours=1)

    with time_machine.travel(later, tick=False):
        api_client.get(LIST_URL, **bearer(raw))

    assert ApiKey.objects.get(client=client).last_used_at == later


def test_session_write_without_csrf_token_is_403(user_client):
    client, _ = user_client
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.login(username=client.user.username, password=PASSWORD)

    r = browser.post(KEYS_URL, {"name": "from-a-forged-form"}, format="json")

    assert r.status_code == 403
    assert not ApiKey.objects.filter(name="from-a-forged-form").exists()
