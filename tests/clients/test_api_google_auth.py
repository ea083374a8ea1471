"""Google sign-in through allauth's real token verification; only Google's certificate download is replaced."""

import time

import jwt
import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import get_user_model

from clients.models import ApiKey, Client
from tests.clients.helpers import LIST_URL, the_error
from tests.conftest import bearer
from tests.factories import make_client

User = get_user_model()

URL = "/api/v1/client/google-auth/"
PICTURE = "https://lh3.googleusercontent.com/a/photo-of-gina"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def google_key() -> rsa.RSAPrivateKey:
    """The key 'Google' signs id_tokens with in these tests."""
    return new_rsa_key()


@pytest.fixture(autouse=True)
def google_certificates(monkeypatch, google_key):
    """Google's certificate endpoint, answered locally with the public half of `google_key`."""

    def fetch_key(credential, keys_url, lookup):  # type: ignore[no-untyped-def]
        return "RS256", google_key.public_key()

    monkeypatch.setattr("allauth.socialaccount.internal.jwtkit.fetch_key", fetch_key)


def id_token(key: rsa.RSAPrivateKey, **overrides: object) -> str:
    now = int(time.time())
    claims: dict = {
        "iss": "https://accounts.google.com",
        "aud": settings.GOOGLE_TEST_CLIENT_ID,
        "sub": "109876543210987654321",
        "email": "gina@gmail.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
        "picture": PICTURE,
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-kid"})


def test_first_google_sign_in_creates_the_account(api_client, google_key):
    r = api_client.post(URL, {"id_token": id_token(google_key)}, format="json")

    assert r.status_code == 200
    data = r.json()
    assert data["user"]["email"] == "gina@gmail.com"
    assert data["profile_image_url"] == PICTURE
    assert data["user_token"].startswith("gmk_")
    assert "..." not in data["user_token"]
    client = Client.objects.get(pk=data["id"])
    assert client.user.email == "gina@gmail.com"
    assert client.profile_image_url == PICTURE
    assert not client.user.has_usable_password()
    assert SocialAccount.objects.filter(user=client.user, provider="google", uid="109876543210987654321").exists()


def test_google_sign_in_key_authenticates_as_bearer(api_client, google_key):
    raw = api_client.post(URL, {"id_token": id_token(google_key)}, format="json").json()["user_token"]

    r = api_client.get(LIST_URL, **bearer(raw))

    assert r.status_code == 200
    assert r.json()["results"][0]["user"]["email"] == "gina@gmail.com"


def test_second_google_sign_in_enters_the_same_account(api_client, google_key):
    first = api_client.post(URL, {"id_token": id_token(google_key)}, format="json").json()
    users = User.objects.count()

    r = api_client.post(URL, {"id_token": id_token(google_key)}, format="json")

    assert r.status_code == 200
    assert r.json()["id"] == first["id"]
    assert r.json()["user_token"] != first["user_token"]
    assert User.objects.count() == users
    assert ApiKey.objects.filter(client_id=first["id"], revoked_at__isnull=True).count() == 2


@pytest.mark.parametrize(
    "make_token",
    [
        lambda key: id_token(new_rsa_key()),
        lambda key: id_token(key, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        lambda key: id_token(key, aud="someone-elses-app.apps.googleusercontent.com"),
        lambda key: id_token(key, iss="https://evil.example.com"),
        lambda key: "not-a-jwt",
    ],
    ids=["signed-by-another-key", "expired", "wrong-audience", "wrong-issuer", "garbage"],
)
def test_an_unverifiable_google_token_is_refused(api_client, google_key, make_token):
    users = User.objects.count()

    r = api_client.post(URL, {"id_token": make_token(google_key)}, format="json")

    assert r.status_code == 400
    assert the_error(r)["code"] == "invalid_google_token"
    assert User.objects.count() == users
    assert not SocialAccount.objects.exists()


@pytest.mark.parametrize("email", ["gina@gmail.com", "GINA@gmail.com"])
def test_google_email_of_a_password_account_is_refused_not_linked(api_client, google_key, email):
    existing, _ = make_client(username="gina", email="gina@gmail.com")

    r = api_client.post(URL, {"id_token": id_token(google_key, email=email)}, format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "id_token"
    assert not SocialAccount.objects.exists()
    assert ApiKey.objects.filter(client=existing).count() == 1
    assert User.objects.filter(email__iexact="gina@gmail.com").count() == 1


def test_google_sign_in_without_any_token_names_id_token(api_client):
    r = api_client.post(URL, {}, format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "id_token"


def test_google_sign_in_refuses_unknown_fields(api_client, google_key):
    r = api_client.post(URL, {"id_token": id_token(google_key), "role": "admin"}, format="json")

    assert r.status_code == 400
    assert the_error(r)["attr"] == "role"
    assert not User.objects.filter(email="gina@gmail.com").exists()


def test_google_sign_in_to_a_closed_account_is_refused(api_client, google_key):
    first = api_client.post(URL, {"id_token": id_token(google_key)}, format="json").json()
    api_client.delete(f"{LIST_URL}{first['id']}/", **bearer(first["user_token"]))

    r = api_client.post(URL, {"id_token": id_token(google_key)}, format="json")

    assert r.status_code == 400
    assert the_error(r)["code"] == "invalid_credentials"
    assert ApiKey.objects.filter(client_id=first["id"], revoked_at__isnull=True).count() == 0
