import pytest
from django.conf import settings

from clients.models import ApiKey
from tests.clients.helpers import LIST_URL, the_error
from tests.conftest import bearer
from tests.factories import PASSWORD, make_client

URL = "/api/v1/client/login/"


def login(api_client, identifier: str, password: str = PASSWORD, *, field: str = "username", ip: str = "127.0.0.1"):
    return api_client.post(URL, {field: identifier, "password": password}, format="json", REMOTE_ADDR=ip)


def test_login_by_username_returns_a_new_full_key(api_client, user_client):
    client, raw = user_client

    r = login(api_client, client.user.username)

    assert r.status_code == 200
    assert r.json()["id"] == client.id
    new_key = r.json()["user_token"]
    assert new_key.startswith("gmk_")
    assert "..." not in new_key
    assert new_key != raw
    assert ApiKey.objects.filter(client=client, revoked_at__isnull=True).count() == 2


@pytest.mark.parametrize("field", ["email", "username"])
def test_login_by_email_returns_a_new_key(api_client, user_client, field):
    client, _ = user_client

    r = login(api_client, client.user.email, field=field)

    assert r.status_code == 200
    assert r.json()["id"] == client.id
    assert api_client.get(LIST_URL, **bearer(r.json()["user_token"])).status_code == 200


def test_login_keeps_earlier_keys_valid(api_client, user_client):
    client, raw = user_client

    assert login(api_client, client.user.username).status_code == 200

    assert api_client.get(LIST_URL, **bearer(raw)).status_code == 200


def test_login_records_the_address_it_came_from(api_client, user_client):
    client, _ = user_client

    login(api_client, client.user.username, ip="198.51.100.7")

    client.refresh_from_db()
    assert client.ip == "198.51.100.7"
    assert client.user.last_login is not None


def test_wrong_password_and_unknown_user_get_the_same_400(api_client, user_client):
    client, _ = user_client

    wrong_password = login(api_client, client.user.username, "not-the-password")
    unknown_user = login(api_client, "nobody-by-this-name", "not-the-password")

    assert wrong_password.status_code == unknown_user.status_code == 400
    assert wrong_password.json() == unknown_user.json()
    assert the_error(wrong_password)["code"] == "invalid_credentials"


def test_failed_login_issues_no_key(api_client, user_client):
    client, _ = user_client

    login(api_client, client.user.username, "not-the-password")

    assert ApiKey.objects.filter(client=client).count() == 1


def test_deactivated_user_cannot_log_in(api_client, user_client):
    client, _ = user_client
    client.user.is_active = False
    client.user.save()

    r = login(api_client, client.user.username)

    assert r.status_code == 400
    assert the_error(r)["code"] == "invalid_credentials"


def test_login_without_username_or_email_names_username(api_client):
    r = api_client.post(URL, {"password": PASSWORD}, format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "username"


def test_login_after_the_failure_limit_is_429_even_with_the_right_password(api_client, user_client):
    client, _ = user_client
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert login(api_client, client.user.username, "not-the-password").status_code == 400

    r = login(api_client, client.user.username)

    assert r.status_code == 429
    assert the_error(r)["code"] == "throttled"
    assert ApiKey.objects.filter(client=client).count() == 1


def test_failures_from_many_addresses_still_lock_the_username(api_client, user_client):
    client, _ = user_client
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        login(api_client, client.user.username, "not-the-password", ip=f"198.51.100.{i + 1}")

    r = login(api_client, client.user.username, ip="203.0.113.1")

    assert r.status_code == 429


def test_failures_from_one_address_lock_every_username_from_it(api_client, user_client):
    client, _ = user_client
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        login(api_client, f"guess{i}", "not-the-password", ip="198.51.100.9")

    from_same_address = login(api_client, client.user.username, ip="198.51.100.9")
    from_elsewhere = login(api_client, client.user.username, ip="203.0.113.1")

    assert from_same_address.status_code == 429
    assert from_elsewhere.status_code == 200


def test_successful_login_resets_the_username_failure_count(api_client, user_client):
    client, _ = user_client
    username = client.user.username
    below_limit = settings.LOGIN_FAILURE_LIMIT - 1
    for i in range(below_limit):
        login(api_client, username, "not-the-password", ip=f"198.51.100.{i + 1}")
    assert login(api_client, username, ip="203.0.113.1").status_code == 200
    for i in range(below_limit):
        login(api_client, username, "not-the-password", ip=f"192.0.2.{i + 1}")

    r = login(api_client, username, ip="203.0.113.2")

    assert r.status_code == 200


def test_one_locked_username_does_not_lock_another(api_client, user_client):
    client, _ = user_client
    other, _ = make_client()
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        login(api_client, other.user.username, "not-the-password", ip=f"198.51.100.{i + 1}")

    r = login(api_client, client.user.username, ip="203.0.113.1")

    assert r.status_code == 200


def test_failures_count_against_the_username_whatever_its_case(api_client, user_client):
    client, _ = user_client
    username = client.user.username
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        variant = username.upper() if i % 2 else username
        login(api_client, variant, "not-the-password", ip=f"198.51.100.{i + 1}")

    r = login(api_client, username, ip="203.0.113.1")

    assert r.status_code == 429


def test_failures_by_username_also_lock_login_by_email(api_client, user_client):
    client, _ = user_client
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        login(api_client, client.user.username, "not-the-password", ip=f"198.51.100.{i + 1}")

    r = login(api_client, client.user.email, field="email", ip="203.0.113.1")

    assert r.status_code == 429


def test_a_forwarded_for_header_does_not_change_the_address_counted(api_client, user_client):
    client, _ = user_client
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        api_client.post(
            URL,
            {"username": f"guess{i}", "password": "not-the-password"},
            format="json",
            REMOTE_ADDR="198.51.100.9",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}",
        )

    r = login(api_client, client.user.username, ip="198.51.100.9")

    assert r.status_code == 429
