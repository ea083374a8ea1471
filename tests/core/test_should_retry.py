"""`x-should-retry: false` on /v1 answers the client must not retry unchanged (API.md §11; core/error_render.py and
the JSON-error middleware)."""

import json

import pytest
import redis
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.test import RequestFactory

from clients.services import api_key_create
from core.error_render import SHOULD_RETRY_HEADER, openai_body, openai_retry_headers_asgi, should_retry
from core.middleware import JsonErrorMiddleware
from tests.conftest import bearer
from tests.inference.conftest import MODEL, fund

V1 = "/v1/chat/completions"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid_request", False),
        (401, "invalid_api_key", False),
        (402, "insufficient_balance", False),
        (403, "model_not_allowed", False),
        (404, "model_not_found", False),
        (409, "stream_not_replayable", False),
        (422, "idempotency_key_reused", False),
        (408, "request_timeout", None),
        (409, "request_in_progress", None),
        (409, "idempotency_key_in_use", None),
        (429, "rate_limited", None),
        (500, "error", None),
        (503, "no_capacity", None),
        (200, None, None),
    ],
)
def test_which_answers_say_do_not_retry(status, code, expected):
    assert should_retry(status, code) is expected


def test_the_lean_path_gets_the_header_as_asgi_pairs():
    assert openai_retry_headers_asgi(400, "invalid_request") == [(b"x-should-retry", b"false")]
    assert openai_retry_headers_asgi(429, "rate_limited") == []


def test_a_bad_v1_body_says_do_not_retry(api_client, user_client):
    r = api_client.post(V1, {"model": MODEL, "messages": []}, format="json", **bearer(user_client[1]))

    assert r.status_code == 400 and r[SHOULD_RETRY_HEADER] == "false"


def test_a_bad_key_and_an_unknown_model_say_do_not_retry(api_client, user_client):
    anonymous = api_client.post(V1, CHAT, format="json")
    unknown = api_client.post(V1, {**CHAT, "model": "nobody/has-it"}, format="json", **bearer(user_client[1]))

    assert anonymous.status_code == 401 and anonymous[SHOULD_RETRY_HEADER] == "false"
    assert unknown.status_code == 404 and unknown[SHOULD_RETRY_HEADER] == "false"


def test_an_unknown_v1_url_says_do_not_retry_and_api_errors_carry_no_header(api_client, user_client):
    missing = api_client.get("/v1/nothing-here", **bearer(user_client[1]))
    api = api_client.get("/api/v1/inference/999999/", **bearer(user_client[1]))

    assert missing.status_code == 404 and missing[SHOULD_RETRY_HEADER] == "false"
    assert api.status_code == 404 and not api.has_header(SHOULD_RETRY_HEADER)


@pytest.mark.django_db(transaction=True)
def test_no_capacity_and_rate_limits_leave_the_sdk_free_to_retry(api_client, user_client, node_on):
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    for name in client.scan_iter("gm:keylim:*"):
        client.delete(name)
    fund(user_client[0])
    _, stub = node_on()
    _, raw = api_key_create(client=user_client[0], name="capped", rpm=1)

    served = api_client.post(V1, CHAT, format="json", **bearer(raw))
    limited = api_client.post(V1, CHAT, format="json", **bearer(raw))
    stub.behaviour.status = 500
    unavailable = api_client.post(V1, CHAT, format="json", **bearer(user_client[1]))

    assert served.status_code == 200 and not served.has_header(SHOULD_RETRY_HEADER)
    assert limited.status_code == 429 and not limited.has_header(SHOULD_RETRY_HEADER)
    assert unavailable.status_code == 503 and not unavailable.has_header(SHOULD_RETRY_HEADER)
    client.close()


def test_a_409_is_judged_by_its_code():
    def answer(code: str):  # type: ignore[no-untyped-def]
        def view(request: HttpRequest) -> JsonResponse:
            return JsonResponse(openai_body(409, message="busy", code=code), status=409)

        return JsonErrorMiddleware(view)(RequestFactory().post(V1))

    in_progress, not_replayable = answer("idempotency_key_in_use"), answer("stream_not_replayable")

    assert not in_progress.has_header(SHOULD_RETRY_HEADER)
    assert json.loads(in_progress.content)["error"]["code"] == "idempotency_key_in_use"
    assert not_replayable[SHOULD_RETRY_HEADER] == "false"
