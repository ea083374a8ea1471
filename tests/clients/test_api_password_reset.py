import re

import pytest
from django.core import mail
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tests.clients.helpers import the_error
from tests.factories import PASSWORD

REQUEST_URL = "/api/v1/client/password-reset/"
LOGIN_URL = "/api/v1/client/login/"
NEW_PASSWORD = "amber-Quarry-whistle-57"
LINK = re.compile(r"/reset-password/(?P<uidb64>[^/\s]+)/(?P<token>[^/\s]+)/")


def reset_url(uidb64: str, token: str) -> str:
    return f"/api/v1/client/reset-password/{uidb64}/{token}/"


def emailed_link(api_client, email: str) -> tuple[str, str]:
    """Ask for a reset of `email` and read (uidb64, token) from the link in the email sent."""
    api_client.post(REQUEST_URL, {"email": email}, format="json")
    match = LINK.search(mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match["uidb64"], match["token"]


def can_log_in(api_client, username: str, password: str) -> bool:
    return api_client.post(LOGIN_URL, {"username": username, "password": password}, format="json").status_code == 200


def test_known_and_unknown_emails_get_the_same_answer(api_client, user_client):
    client, _ = user_client

    known = api_client.post(REQUEST_URL, {"email": client.user.email}, format="json")
    unknown = api_client.post(REQUEST_URL, {"email": "nobody@example.com"}, format="json")

    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()


def test_known_email_gets_one_email_with_a_reset_link(api_client, user_client):
    client, _ = user_client

    api_client.post(REQUEST_URL, {"email": client.user.email.upper()}, format="json")

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [client.user.email]
    match = LINK.search(mail.outbox[0].body)
    assert match
    assert match["uidb64"] == urlsafe_base64_encode(force_bytes(client.user.pk))


def test_unknown_email_gets_no_email(api_client, user_client):
    api_client.post(REQUEST_URL, {"email": "nobody@example.com"}, format="json")

    assert mail.outbox == []


def test_reset_request_refuses_an_invalid_email(api_client):
    r = api_client.post(REQUEST_URL, {"email": "not-an-email"}, format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "email"


def test_emailed_link_sets_the_new_password(api_client, user_client):
    client, _ = user_client
    uidb64, token = emailed_link(api_client, client.user.email)

    r = api_client.post(reset_url(uidb64, token), {"new_password": NEW_PASSWORD}, format="json")

    assert r.status_code == 200
    client.user.refresh_from_db()
    assert client.user.check_password(NEW_PASSWORD)
    assert can_log_in(api_client, client.user.username, NEW_PASSWORD)
    assert not can_log_in(api_client, client.user.username, PASSWORD)


def test_a_used_link_is_refused(api_client, user_client):
    client, _ = user_client
    uidb64, token = emailed_link(api_client, client.user.email)
    api_client.post(reset_url(uidb64, token), {"new_password": NEW_PASSWORD}, format="json")

    r = api_client.post(reset_url(uidb64, token), {"new_password": "second-Attempt-pass-81"}, format="json")

    assert r.status_code == 400
    assert the_error(r)["code"] == "invalid_reset_token"
    client.user.refresh_from_db()
    assert client.user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    ("uidb64", "token"),
    [
        ("garbage", "garbage"),
        ("MQ", "cz8bqk-0123456789abcdef0123456789abcdef"),
        (urlsafe_base64_encode(b"99999999999999999999999999"), "cz8bqk-0123456789abcdef0123456789abcdef"),
        (urlsafe_base64_encode(b"\xff\xfe"), "garbage"),
    ],
    ids=["both-garbage", "wrong-token", "huge-uid", "undecodable-uid"],
)
def test_a_garbage_link_is_refused(api_client, user_client, uidb64, token):
    r = api_client.post(reset_url(uidb64, token), {"new_password": NEW_PASSWORD}, format="json")

    assert r.status_code == 400
    assert the_error(r)["code"] == "invalid_reset_token"


def test_a_real_uid_with_a_forged_token_changes_nothing(api_client, user_client):
    client, _ = user_client
    uidb64 = urlsafe_base64_encode(force_bytes(client.user.pk))

    r = api_client.post(reset_url(uidb64, "cz8bqk-0123456789abcdef0123456789abcdef"), {"new_password": NEW_PASSWORD})

    assert r.status_code == 400
    client.user.refresh_from_db()
    assert client.user.check_password(PASSWORD)


def test_a_weak_new_password_is_refused_naming_new_password(api_client, user_client):
    client, _ = user_client
    uidb64, token = emailed_link(api_client, client.user.email)

    r = api_client.post(reset_url(uidb64, token), {"new_password": "short"}, format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "new_password"
    client.user.refresh_from_db()
    assert client.user.check_password(PASSWORD)


def test_a_weak_new_password_does_not_use_up_the_link(api_client, user_client):
    client, _ = user_client
    uidb64, token = emailed_link(api_client, client.user.email)
    api_client.post(reset_url(uidb64, token), {"new_password": "short"}, format="json")

    r = api_client.post(reset_url(uidb64, token), {"new_password": NEW_PASSWORD}, format="json")

    assert r.status_code == 200
