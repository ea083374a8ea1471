import json

from django.conf import settings
from django.contrib.auth import get_user_model

from tests.clients.helpers import detail_url, the_error
from tests.conftest import bearer

User = get_user_model()


def oversized_json(**fields: object) -> str:
    """A JSON object just over MAX_REQUEST_BODY_BYTES, padded in an extra field."""
    body = json.dumps(fields | {"padding": ""})
    return json.dumps(fields | {"padding": "x" * (settings.MAX_REQUEST_BODY_BYTES - len(body) + 1)})


def test_body_over_the_limit_is_413(api_client):
    data = oversized_json(username="big", email="big@example.com", password="x", terms_accepted=True)
    assert len(data) == settings.MAX_REQUEST_BODY_BYTES + 1

    r = api_client.post("/api/v1/client/register/", data, content_type="application/json")

    assert r.status_code == 413
    assert the_error(r)["code"] == "payload_too_large"
    assert not User.objects.filter(username="big").exists()


def test_body_over_the_limit_is_413_for_an_authenticated_write(api_client, user_client):
    client, raw = user_client

    r = api_client.patch(
        detail_url(client.id), oversized_json(phone_no="555"), content_type="application/json", **bearer(raw)
    )

    assert r.status_code == 413
    client.refresh_from_db()
    assert client.phone_no is None
