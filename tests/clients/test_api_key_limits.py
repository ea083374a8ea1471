"""API.md §12: keys with limits (create, change, read with usage), scopes on key creation, top-ups, payouts and
rentals, expiry."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from clients.models import ApiKey
from clients.services import api_key_create
from tests.conftest import bearer

KEYS = "/api/v1/client/keys/"


def _codes(r) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["code"] for e in r.json()["errors"]]


def test_a_key_is_created_with_its_limits_and_shows_them_with_its_usage(api_client, user_client):
    client, raw = user_client
    body = {
        "name": "ci",
        "scopes": ["inference"],
        "models": ["stub/model"],
        "budget": "5.00",
        "budget_period": "day",
        "rpm": 10,
        "tpm": 1000,
        "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
    }

    r = api_client.post(KEYS, body, format="json", **bearer(raw))

    assert r.status_code == 201, r.content
    got = r.json()
    assert got["key"].startswith("gmk_") and len(got["key"]) > 20
    assert (got["scopes"], got["models"], got["budget"], got["budget_period"], got["rpm"], got["tpm"]) == (
        ["inference"],
        ["stub/model"],
        "5.000000",
        "day",
        10,
        1000,
    )
    assert got["usage"]["spent"] == "0.000000" and got["usage"]["remaining"] == "5.000000"
    key = ApiKey.objects.get(pk=got["id"])
    assert (key.client_id, key.rpm, key.allowed_models, key.budget) == (client.pk, 10, ["stub/model"], Decimal("5"))
    detail = api_client.get(f"{KEYS}{key.pk}/", **bearer(raw)).json()
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert detail["usage"]["period_started_at"] == start.isoformat().replace("+00:00", "Z")
    assert detail["usage"]["resets_at"] == (start + timedelta(days=1)).isoformat().replace("+00:00", "Z")


def test_a_key_without_limits_gets_every_scope_and_no_limit(api_client, user_client):
    r = api_client.post(KEYS, {"name": "plain"}, format="json", **bearer(user_client[1]))

    got = r.json()
    assert got["scopes"] == ["inference", "rentals", "training", "account"]
    assert (got["models"], got["budget"], got["rpm"], got["tpm"], got["expires_at"]) == ([], None, None, None, None)
    assert got["usage"]["remaining"] is None and got["usage"]["resets_at"] is None


def test_bad_limits_are_400_naming_the_field(api_client, user_client):
    for field, value in [
        ("scopes", ["root"]),
        ("budget", "-1"),
        ("budget_period", "year"),
        ("rpm", 0),
        ("tpm", "many"),
        ("expires_at", "tomorrow"),
        ("models", "stub/model"),
    ]:
        r = api_client.post(KEYS, {"name": "x", field: value}, format="json", **bearer(user_client[1]))
        assert r.status_code == 400, (field, r.content)
        assert r.json()["errors"][0]["attr"].split(".")[0] == field
    assert ApiKey.objects.filter(client=user_client[0]).count() == 1


def test_patch_changes_limits_and_others_keys_are_404(api_client, user_client, other_user):
    key, _ = api_key_create(client=user_client[0], name="app")

    r = api_client.patch(f"{KEYS}{key.pk}/", {"rpm": 5, "budget": "1.5"}, format="json", **bearer(user_client[1]))

    assert r.status_code == 200, r.content
    assert (r.json()["rpm"], r.json()["budget"], r.json()["name"]) == (5, "1.500000", "app")
    key.refresh_from_db()
    assert (key.rpm, key.budget) == (5, Decimal("1.5"))
    assert api_client.patch(f"{KEYS}{key.pk}/", {"rpm": 1}, format="json", **bearer(other_user[1])).status_code == 404
    assert api_client.patch(f"{KEYS}{key.pk}/", {"rpm": -1}, format="json", **bearer(user_client[1])).status_code == 400
    assert api_client.get(f"{KEYS}{key.pk}/").status_code == 401


def test_current_shows_the_calling_key(api_client, user_client):
    key, raw = api_key_create(client=user_client[0], name="narrow", scopes=["inference"], rpm=3)

    r = api_client.get(f"{KEYS}current/", **bearer(raw))

    assert r.status_code == 200
    assert (r.json()["id"], r.json()["name"], r.json()["rpm"]) == (key.pk, "narrow", 3)
    assert "usage" in r.json()
    assert api_client.get(f"{KEYS}current/").status_code == 401


def test_a_key_without_account_cannot_make_keys_top_up_or_pay_out(api_client, user_client):
    _, raw = api_key_create(client=user_client[0], name="app", scopes=["inference", "rentals"])

    made = api_client.post(KEYS, {"name": "more"}, format="json", **bearer(raw))
    topup = api_client.post("/api/v1/client/topups/", {"amount": "10.00"}, format="json", **bearer(raw))
    payout = api_client.post("/api/v1/client/payouts/", {"amount": "1.00"}, format="json", **bearer(raw))

    for r in (made, topup, payout):
        assert r.status_code == 403, r.content
        assert _codes(r) == ["insufficient_scope"]
    assert ApiKey.objects.filter(client=user_client[0]).count() == 2


def test_a_key_cannot_grant_scopes_it_lacks(api_client, user_client):
    _, raw = api_key_create(client=user_client[0], name="admin-ish", scopes=["inference", "account"])

    wider = api_client.post(KEYS, {"name": "w", "scopes": ["rentals"]}, format="json", **bearer(raw))
    default = api_client.post(KEYS, {"name": "d"}, format="json", **bearer(raw))

    assert wider.status_code == 403, wider.content
    assert _codes(wider) == ["insufficient_scope"]
    assert default.status_code == 201 and default.json()["scopes"] == ["inference", "account"]


def test_a_key_without_rentals_cannot_rent_or_list_rentals(api_client, user_client):
    _, raw = api_key_create(client=user_client[0], name="llm-only", scopes=["inference"])

    listing = api_client.get("/api/v1/rentals/", **bearer(raw))
    renting = api_client.post("/api/v1/rentals/", {"node_id": 1, "hours": 1}, format="json", **bearer(raw))

    assert listing.status_code == 403 and _codes(listing) == ["insufficient_scope"]
    assert renting.status_code == 403 and _codes(renting) == ["insufficient_scope"]
    assert api_client.get("/api/v1/rentals/", **bearer(user_client[1])).status_code == 200


def test_a_key_without_inference_cannot_ask(api_client, user_client):
    _, raw = api_key_create(client=user_client[0], name="rent-only", scopes=["rentals"])

    seed = api_client.post(
        "/api/v1/inference/", {"question_text": "hi", "desired_model": "stub/model"}, format="json", **bearer(raw)
    )
    v1 = api_client.post(
        "/v1/chat/completions",
        {"model": "stub/model", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
        **bearer(raw),
    )

    assert seed.status_code == 403 and _codes(seed) == ["insufficient_scope"]
    assert v1.status_code == 403 and v1.json()["error"]["code"] == "insufficient_scope"


def test_an_expired_key_is_401(api_client, user_client):
    _, raw = api_key_create(client=user_client[0], name="old", expires_at=timezone.now() - timedelta(seconds=1))

    r = api_client.get(KEYS, **bearer(raw))
    v1 = api_client.get("/v1/models", **bearer(raw))

    assert r.status_code == 401 and _codes(r) == ["key_expired"]
    assert v1.status_code == 401 and v1.json()["error"]["code"] == "invalid_api_key"


def test_logout_works_with_any_key(api_client, user_client):
    key, raw = api_key_create(client=user_client[0], name="x", scopes=["inference"])

    assert api_client.post("/api/v1/client/logout/", **bearer(raw)).status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
