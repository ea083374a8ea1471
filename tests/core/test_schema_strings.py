"""The schema's request string patterns agree with what the API accepts: a value the pattern lets through is not
refused as blank, and a value the API refuses as blank does not match (fuzzing found `["\\x1c"]` for a key's
`models`: Python strips the control character as whitespace, so DRF saw a blank item the schema allowed)."""

import re

import pytest

from tests.clients.helpers import KEYS_URL
from tests.conftest import bearer


@pytest.fixture
def key_schema(api_client):  # type: ignore[no-untyped-def]
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    return schema["components"]["schemas"]["ApiKeyInRequest"]["properties"]


@pytest.mark.parametrize("item", ["\x1c", " ", "\t\x1f ", "\u2003"])
def test_a_blank_model_item_is_outside_the_schema_and_refused(api_client, user_client, key_schema, item):
    _, raw = user_client
    pattern = key_schema["models"]["items"]["pattern"]

    r = api_client.post(KEYS_URL, {"name": "ci", "models": [item]}, format="json", **bearer(raw))

    assert re.search(pattern, item) is None
    assert r.status_code == 400
    assert r.json()["errors"][0]["attr"] == "models.0"


@pytest.mark.parametrize("item", ["llama-3-8b", " padded ", "\x1cx"])
def test_a_model_item_the_schema_allows_is_accepted(api_client, user_client, key_schema, item):
    _, raw = user_client
    pattern = key_schema["models"]["items"]["pattern"]

    r = api_client.post(KEYS_URL, {"name": "ci", "models": [item]}, format="json", **bearer(raw))

    assert re.search(pattern, item) is not None
    assert r.status_code == 201, r.content
    assert r.json()["models"] == [item.strip()]
