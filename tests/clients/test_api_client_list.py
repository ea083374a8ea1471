import pytest
from django.contrib.auth import get_user_model

from clients.models import ApiKey, Client
from clients.services import api_key_create
from llm_models.choices import NodeStatus
from llm_models.models import Node
from tests.clients.helpers import LIST_URL, detail_url, the_error
from tests.conftest import bearer
from tests.factories import make_client, make_node

User = get_user_model()


def masked(raw_key: str) -> str:
    return f"gmk_...{raw_key[-4:]}"


# --- Reading -----------------------------------------------------------------------------------------


def test_user_sees_only_itself_in_the_list(api_client, user_client, other_user):
    client, raw = user_client

    r = api_client.get(LIST_URL, **bearer(raw))

    assert r.status_code == 200
    assert r.json()["count"] == 1
    assert [c["id"] for c in r.json()["results"]] == [client.id]


def test_user_reads_its_own_detail(api_client, user_client):
    client, raw = user_client

    r = api_client.get(detail_url(client.id), **bearer(raw))

    assert r.status_code == 200
    assert r.json()["id"] == client.id
    assert r.json()["user"] == {"id": client.user.id, "username": client.user.username, "email": client.user.email}


def test_another_clients_id_is_404_like_a_missing_one(api_client, user_client, other_user):
    _, raw = user_client
    other, _ = other_user
    missing_id = Client.objects.order_by("-id").first().id + 1000

    someone_elses = api_client.get(detail_url(other.id), **bearer(raw))
    missing = api_client.get(detail_url(missing_id), **bearer(raw))

    assert someone_elses.status_code == missing.status_code == 404
    assert someone_elses.json() == missing.json()


def test_user_token_is_masked_in_the_list(api_client, user_client):
    _, raw = user_client

    r = api_client.get(LIST_URL, **bearer(raw))

    assert r.json()["results"][0]["user_token"] == masked(raw)


def test_user_token_is_masked_with_the_newest_key_in_the_detail(api_client, user_client):
    client, raw = user_client
    _, newest = api_key_create(client=client, name="laptop")

    r = api_client.get(detail_url(client.id), **bearer(raw))

    assert r.json()["user_token"] == masked(newest)


def test_admin_sees_every_client(api_client, admin, user_client, other_user, provider):
    _, raw = admin

    r = api_client.get(LIST_URL, **bearer(raw))

    assert r.status_code == 200
    assert {c["id"] for c in r.json()["results"]} == set(Client.objects.values_list("id", flat=True))
    assert r.json()["count"] == 4


def test_admin_reads_another_clients_detail(api_client, admin, user_client):
    _, raw = admin
    client, user_raw = user_client

    r = api_client.get(detail_url(client.id), **bearer(raw))

    assert r.status_code == 200
    assert r.json()["user_token"] == masked(user_raw)


def test_admin_filters_by_role(api_client, admin, user_client, applicant, provider):
    _, raw = admin

    r = api_client.get(LIST_URL, {"role": "gpu_provider"}, **bearer(raw))

    assert {c["id"] for c in r.json()["results"]} == {applicant[0].id, provider[0].id}


def test_admin_filters_pending_provider_applications(api_client, admin, user_client, applicant, provider):
    _, raw = admin

    r = api_client.get(LIST_URL, {"pending_provider": "true"}, **bearer(raw))

    assert [c["id"] for c in r.json()["results"]] == [applicant[0].id]


def test_admin_searches_by_username(api_client, admin, other_user):
    _, raw = admin
    wanted, _ = make_client(username="searchable-sam")

    r = api_client.get(LIST_URL, {"search": "searchable"}, **bearer(raw))

    assert [c["id"] for c in r.json()["results"]] == [wanted.id]


def test_admin_orders_by_descending_id(api_client, admin, user_client, other_user):
    _, raw = admin

    r = api_client.get(LIST_URL, {"ordering": "-id"}, **bearer(raw))

    ids = [c["id"] for c in r.json()["results"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 3


def test_admin_paginates_the_list(api_client, admin, user_client, other_user):
    _, raw = admin

    r = api_client.get(LIST_URL, {"page_size": 1}, **bearer(raw))

    data = r.json()
    assert data["count"] == 3
    assert len(data["results"]) == 1
    assert data["next"] is not None
    assert data["previous"] is None


def test_list_refuses_an_unknown_role_filter(api_client, admin):
    _, raw = admin

    r = api_client.get(LIST_URL, {"role": "emperor"}, **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "role"


# --- Changing ----------------------------------------------------------------------------------------


def test_user_patches_its_own_profile_fields(api_client, user_client):
    client, raw = user_client

    r = api_client.patch(
        detail_url(client.id),
        {"phone_no": "+4915123456", "user_image": 7, "terms_accepted": True},
        format="json",
        **bearer(raw),
    )

    assert r.status_code == 200
    assert (r.json()["phone_no"], r.json()["user_image"], r.json()["terms_accepted"]) == ("+4915123456", 7, True)
    client.refresh_from_db()
    assert (client.phone_no, client.user_image, client.terms_accepted) == ("+4915123456", 7, True)


def test_user_patches_only_its_username(api_client, user_client):
    client, raw = user_client
    email = client.user.email

    r = api_client.patch(detail_url(client.id), {"user": {"username": "renamed"}}, format="json", **bearer(raw))

    assert r.status_code == 200
    client.user.refresh_from_db()
    assert (client.user.username, client.user.email) == ("renamed", email)


def test_user_patches_its_email(api_client, user_client):
    client, raw = user_client

    r = api_client.patch(
        detail_url(client.id),
        {"user": {"username": client.user.username, "email": "new-address@example.com"}},
        format="json",
        **bearer(raw),
    )

    assert r.status_code == 200
    client.user.refresh_from_db()
    assert client.user.email == "new-address@example.com"


def test_user_puts_its_whole_profile(api_client, user_client):
    client, raw = user_client
    body = {
        "user": {"username": "put-name", "email": "put@example.com"},
        "phone_no": "555-0100",
        "user_image": 32767,
        "terms_accepted": False,
    }

    r = api_client.put(detail_url(client.id), body, format="json", **bearer(raw))

    assert r.status_code == 200
    client.refresh_from_db()
    assert (client.user.username, client.user.email) == ("put-name", "put@example.com")
    assert (client.phone_no, client.user_image, client.terms_accepted) == ("555-0100", 32767, False)


def test_put_without_user_names_user(api_client, user_client):
    client, raw = user_client

    r = api_client.put(detail_url(client.id), {"phone_no": "555-0100"}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "user"


def test_user_image_above_32767_is_refused(api_client, user_client):
    client, raw = user_client

    r = api_client.patch(detail_url(client.id), {"user_image": 40000}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "user_image"
    client.refresh_from_db()
    assert client.user_image == 0


def test_phone_no_longer_than_12_is_refused_on_patch(api_client, user_client):
    client, raw = user_client

    r = api_client.patch(detail_url(client.id), {"phone_no": "1234567890123"}, format="json", **bearer(raw))

    assert r.status_code == 400
    assert the_error(r)["attr"] == "phone_no"


def test_patching_to_a_taken_username_is_refused(api_client, user_client, other_user):
    client, raw = user_client
    other, _ = other_user

    r = api_client.patch(
        detail_url(client.id), {"user": {"username": other.user.username.upper()}}, format="json", **bearer(raw)
    )

    assert r.status_code == 400
    assert the_error(r)["attr"] == "user.username"
    client.user.refresh_from_db()
    assert client.user.username != other.user.username.upper()


def test_patching_to_a_taken_email_is_refused(api_client, user_client, other_user):
    client, raw = user_client
    other, _ = other_user
    email = client.user.email

    r = api_client.patch(
        detail_url(client.id),
        {"user": {"username": client.user.username, "email": other.user.email.upper()}},
        format="json",
        **bearer(raw),
    )

    assert r.status_code == 400
    assert the_error(r)["attr"] == "user.email"
    client.user.refresh_from_db()
    assert client.user.email == email


def test_user_cannot_patch_another_client(api_client, user_client, other_user):
    _, raw = user_client
    other, _ = other_user

    r = api_client.patch(detail_url(other.id), {"phone_no": "555-0199"}, format="json", **bearer(raw))

    assert r.status_code == 404
    other.refresh_from_db()
    assert other.phone_no is None


# --- Creating and deleting ---------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["user_client", "applicant", "provider"])
def test_non_admin_cannot_create_a_client(api_client, request, actor):
    _, raw = request.getfixturevalue(actor)

    r = api_client.post(
        LIST_URL, {"user": {"username": "made-up", "email": "made-up@example.com"}}, format="json", **bearer(raw)
    )

    assert r.status_code == 403
    assert not User.objects.filter(username="made-up").exists()


def test_admin_creates_a_client_with_its_full_key(api_client, admin):
    _, raw = admin

    r = api_client.post(
        LIST_URL,
        {"user": {"username": "newcomer", "email": "newcomer@example.com"}, "phone_no": "555-0123"},
        format="json",
        **bearer(raw),
    )

    assert r.status_code == 201
    token = r.json()["user_token"]
    assert token.startswith("gmk_")
    assert "..." not in token
    client = Client.objects.get(pk=r.json()["id"])
    assert (client.user.username, client.phone_no, client.role) == ("newcomer", "555-0123", "user")
    assert not client.user.has_usable_password()
    me = api_client.get(LIST_URL, **bearer(token))
    assert [c["id"] for c in me.json()["results"]] == [client.id]


def test_admin_create_refuses_a_taken_username(api_client, admin, user_client):
    _, raw = admin
    existing, _ = user_client

    r = api_client.post(
        LIST_URL, {"user": {"username": existing.user.username, "email": "x@example.com"}}, format="json", **bearer(raw)
    )

    assert r.status_code == 400
    assert the_error(r)["attr"] == "user.username"
    assert not User.objects.filter(email="x@example.com").exists()


def test_user_deletes_itself_and_its_key_stops_working(api_client, user_client):
    client, raw = user_client

    r = api_client.delete(detail_url(client.id), **bearer(raw))

    assert r.status_code == 204
    client.user.refresh_from_db()
    assert client.user.is_active is False
    assert not ApiKey.objects.filter(client=client, revoked_at__isnull=True).exists()
    assert api_client.get(LIST_URL, **bearer(raw)).status_code == 401


def test_a_provider_closing_its_account_deregisters_its_nodes(api_client, provider):
    client, raw = provider
    node, _ = make_node(owner=client, status=NodeStatus.ONLINE)

    r = api_client.delete(detail_url(client.id), **bearer(raw))

    assert r.status_code == 204
    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED
    assert node.deregistered_at is not None
    assert not Node.objects.filter(owner=client).exclude(status=NodeStatus.DEREGISTERED).exists()


def test_user_cannot_delete_another_client(api_client, user_client, other_user):
    _, raw = user_client
    other, other_raw = other_user

    r = api_client.delete(detail_url(other.id), **bearer(raw))

    assert r.status_code == 404
    other.user.refresh_from_db()
    assert other.user.is_active is True
    assert api_client.get(LIST_URL, **bearer(other_raw)).status_code == 200


def test_admin_deletes_another_client(api_client, admin, user_client):
    _, raw = admin
    client, user_raw = user_client

    r = api_client.delete(detail_url(client.id), **bearer(raw))

    assert r.status_code == 204
    assert api_client.get(LIST_URL, **bearer(user_raw)).status_code == 401


def test_deleted_client_is_gone_from_the_admin_list(api_client, admin, user_client):
    _, raw = admin
    client, user_raw = user_client
    api_client.delete(detail_url(client.id), **bearer(user_raw))

    r = api_client.get(LIST_URL, **bearer(raw))

    assert client.id not in {c["id"] for c in r.json()["results"]}


# --- Anonymous ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "list/"),
        ("post", "list/"),
        ("get", "list/{id}/"),
        ("patch", "list/{id}/"),
        ("put", "list/{id}/"),
        ("delete", "list/{id}/"),
        ("post", "list/{id}/apply-provider/"),
        ("post", "list/{id}/approve-provider/"),
        ("post", "list/{id}/revoke-provider/"),
        ("get", "keys/"),
        ("post", "keys/"),
        ("delete", "keys/{key_id}/"),
        ("post", "logout/"),
    ],
)
def test_anonymous_is_401_everywhere(api_client, user_client, method, path):
    client, _ = user_client
    key = ApiKey.objects.get(client=client)
    url = "/api/v1/client/" + path.format(id=client.id, key_id=key.id)

    r = getattr(api_client, method)(url, {}, format="json")

    assert r.status_code == 401
    assert the_error(r)["code"] == "not_authenticated"
    client.refresh_from_db()
    key.refresh_from_db()
    assert (client.user.is_active, client.role, key.revoked_at) == (True, "user", None)
