import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail

from clients.models import ApiKey, Client
from core.tokens import hash_secret
from tests.clients.helpers import LIST_URL, the_error
from tests.conftest import bearer
from tests.factories import make_client

User = get_user_model()

URL = "/api/v1/client/register/"
STRONG_PASSWORD = "violet-Harbour-lantern-93"


def body(**overrides: object) -> dict:
    data: dict = {
        "username": "alice",
        "email": "alice@example.com",
        "password": STRONG_PASSWORD,
        "phone_no": "+15551234567",
        "terms_accepted": True,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_register_returns_201_with_the_client_and_its_full_key(api_client):
    r = api_client.post(URL, body(), format="json")

    assert r.status_code == 201
    data = r.json()
    assert data["user"]["username"] == "alice"
    assert data["user"]["email"] == "alice@example.com"
    assert data["phone_no"] == "+15551234567"
    assert data["terms_accepted"] is True
    assert data["role"] == "user"
    assert data["is_gpu_provider_approved"] is False
    assert data["user_token"].startswith("gmk_")
    assert "..." not in data["user_token"]
    client = Client.objects.get(user__username="alice")
    assert data["id"] == client.id
    assert client.user.check_password(STRONG_PASSWORD)


def test_registered_key_authenticates_as_bearer(api_client):
    raw = api_client.post(URL, body(), format="json").json()["user_token"]

    r = api_client.get(LIST_URL, **bearer(raw))

    assert r.status_code == 200
    assert [c["user"]["username"] for c in r.json()["results"]] == ["alice"]


def test_register_stores_only_the_hash_of_the_key(api_client):
    raw = api_client.post(URL, body(), format="json").json()["user_token"]

    key = ApiKey.objects.get(client__user__username="alice")
    assert key.digest == hash_secret(raw)
    assert raw not in {key.digest, key.name, key.last4}


def test_register_sends_a_verification_email(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = api_client.post(URL, body(), format="json")

    assert r.status_code == 201
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert EmailAddress.objects.filter(user__username="alice", email="alice@example.com", verified=False).exists()


@pytest.mark.parametrize("password", ["Sh0rt!", "1234567890123", "qwertyuiop", "alice@example.com"])
def test_register_refuses_a_weak_password_naming_password(api_client, password):
    r = api_client.post(URL, body(password=password), format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "password"
    assert not User.objects.filter(username="alice").exists()


@pytest.mark.parametrize("username", ["taken", "TAKEN"])
def test_register_refuses_a_taken_username_naming_username(api_client, username):
    make_client(username="taken")

    r = api_client.post(URL, body(username=username), format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "username"
    assert not User.objects.filter(email="alice@example.com").exists()


@pytest.mark.parametrize("email", ["bob@example.com", "BOB@Example.COM"])
def test_register_refuses_a_taken_email_whatever_its_case(api_client, email):
    make_client(username="bob", email="bob@example.com")

    r = api_client.post(URL, body(email=email), format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "email"
    assert not User.objects.filter(username="alice").exists()


def test_register_refuses_a_phone_number_longer_than_12_characters(api_client):
    r = api_client.post(URL, body(phone_no="+155512345678"), format="json")

    assert r.status_code == 400
    error = the_error(r)
    assert (error["code"], error["attr"]) == ("max_length", "phone_no")
    assert not User.objects.filter(username="alice").exists()


def test_register_refuses_terms_not_accepted(api_client):
    r = api_client.post(URL, body(terms_accepted=False), format="json")

    assert r.status_code == 400
    error = the_error(r)
    assert (error["code"], error["attr"]) == ("terms_not_accepted", "terms_accepted")
    assert not User.objects.filter(username="alice").exists()


def test_register_refuses_missing_terms_accepted(api_client):
    data = body()
    del data["terms_accepted"]

    r = api_client.post(URL, data, format="json")

    assert r.status_code == 400
    error = the_error(r)
    assert (error["code"], error["attr"]) == ("required", "terms_accepted")
    assert not User.objects.filter(username="alice").exists()


def test_register_refuses_an_invalid_email(api_client):
    r = api_client.post(URL, body(email="not-an-email"), format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "email"
    assert not User.objects.filter(username="alice").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("role", "admin"), ("is_gpu_provider_approved", True), ("balance", "1000000.00")],
)
def test_register_refuses_a_server_owned_field_naming_it(api_client, field, value):
    r = api_client.post(URL, body(**{field: value}), format="json")

    assert r.status_code == 400
    error = the_error(r)
    assert (error["code"], error["attr"]) == ("read_only_field", field)
    assert not User.objects.filter(username="alice").exists()


def test_failed_register_stores_nothing_and_sends_no_email(api_client, django_capture_on_commit_callbacks):
    users, clients, keys = User.objects.count(), Client.objects.count(), ApiKey.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        r = api_client.post(URL, body(password="short"), format="json")

    assert r.status_code == 400
    assert (User.objects.count(), Client.objects.count(), ApiKey.objects.count()) == (users, clients, keys)
    assert EmailAddress.objects.count() == 0
    assert mail.outbox == []


def test_register_refuses_a_username_with_an_at_sign_so_logins_are_never_ambiguous(api_client):
    make_client(username="bob", email="bob@example.com")

    r = api_client.post(URL, body(username="bob@example.com"), format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "username"
    assert the_error(r)["code"] == "invalid_username"
    assert not User.objects.filter(username="bob@example.com").exists()
