"""Request ids and JSON logs (docs/API.md §16): X-Request-Id in, out, in the request's log lines, to the node."""

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from core import request_id
from core.logging import JsonFormatter, RequestIdFilter
from tests.inference.conftest import MODEL, fund, settle_usage, start_service, streamed
from tests.llm_models.conftest import _stop

MADE = re.compile(r"[0-9a-f]{32}")
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def test_a_given_request_id_is_echoed(client):
    r = client.get("/healthz", HTTP_X_REQUEST_ID="trace-42.a:b_c-d")

    assert r["X-Request-Id"] == "trace-42.a:b_c-d"


def test_a_request_without_an_id_gets_one(client):
    first, second = client.get("/healthz")["X-Request-Id"], client.get("/healthz")["X-Request-Id"]

    assert MADE.fullmatch(first) and MADE.fullmatch(second) and first != second


@pytest.mark.parametrize("unsafe", ["x" * 129, "has space", "semi;colon", "new\nline", 'quote"', "é"])
def test_an_unsafe_or_overlong_request_id_is_replaced(unsafe):
    assert MADE.fullmatch(request_id.accept(unsafe))


def test_errors_carry_the_request_id_too(client):
    r = client.get("/api/v1/no-such-thing/", HTTP_X_REQUEST_ID="lost-1")

    assert r.status_code == 404
    assert r["X-Request-Id"] == "lost-1"


@contextmanager
def json_log(name: str) -> Iterator[io.StringIO]:
    """What logger `name` writes while inside, as LOG_FORMAT=json writes it (the id filter included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger(name)
    log.addHandler(handler)
    propagate, level = log.propagate, log.level
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)
        log.propagate, log.level = propagate, level


def test_a_log_line_after_the_request_on_the_same_thread_carries_no_id(client):
    with json_log("tests.console.after") as stream:
        r = client.get("/healthz", HTTP_X_REQUEST_ID="done-1")
        logging.getLogger("tests.console.after").warning("the next thing on this thread")

    assert r["X-Request-Id"] == "done-1"
    assert request_id.current.get() is None
    assert json.loads(stream.getvalue())["request_id"] == "-"


def test_djangos_own_line_for_an_error_answer_still_names_its_request(client):
    """Django writes it once the middleware has let the id go; the record carries the request, which has it."""
    with json_log("django.request") as stream:
        r = client.get("/api/v1/gpu/list/1/", HTTP_X_REQUEST_ID="refused-1")

    assert r.status_code == 401
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all(line["request_id"] == "refused-1" for line in lines)


def test_the_json_format_writes_one_object_per_line_with_the_request_id():
    log = logging.getLogger("tests.console.json")
    with json_log("tests.console.json") as stream:
        token = request_id.current.set("rid-7")
        try:
            log.warning("node %s slow\nsecond line", "n1", extra={"node_id": 3})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        finally:
            request_id.current.reset(token)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "node n1 slow\nsecond line" and first["level"] == "WARNING"
    assert (first["request_id"], first["node_id"], first["logger"]) == ("rid-7", 3, "tests.console.json")
    assert first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exc_info"]


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("usage_journal_clean")
def test_the_lean_path_echoes_forwards_and_logs_the_request_id(tmp_path, user_client, node_on):
    client, key = user_client
    fund(client, "5.00")
    _node, stub = node_on()
    web = start_service(tmp_path / "web.log", LOG_FORMAT="json", LOG_REQUESTS="true")
    try:
        given = httpx.post(
            f"{web.base_url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {key}", "X-Request-Id": "client-trace-0001"},
            timeout=30,
        )
        made = httpx.post(
            f"{web.base_url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        refused = httpx.post(  # no key: the lean path hands it to Django, which answers 401 with the same id
            f"{web.base_url}/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "no-key-1"}, timeout=30
        )
    finally:
        _stop(web)
    settle_usage()

    assert given.status_code == 200 and given.headers["X-Request-Id"] == "client-trace-0001"
    assert made.status_code == 200 and MADE.fullmatch(made.headers["X-Request-Id"])
    assert refused.status_code == 401 and refused.headers["X-Request-Id"] == "no-key-1"
    seen = [r.headers.get("X-Request-Id") for r in stub.chat_requests]
    assert seen == ["client-trace-0001", made.headers["X-Request-Id"]]
    lines = [json.loads(line) for line in web.log_path.read_text().splitlines() if line.startswith("{")]
    access = {line["request_id"]: line for line in lines if line["logger"] == "gpumarket.access"}
    assert access["client-trace-0001"]["route"] == "/v1/chat/completions"
    assert access["client-trace-0001"]["status"] == 200
    assert access[made.headers["X-Request-Id"]]["status"] == 200
    assert access["no-key-1"]["status"] == 401


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_the_django_path_forwards_the_request_id_to_the_node(client, user_client, node_on):
    """An Idempotency-Key sends /v1 through the Django view (the lean path leaves those to it)."""
    fund(user_client[0], "5.00")
    _node, stub = node_on()

    r = client.post(
        "/v1/chat/completions",
        CHAT,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {user_client[1]}",
        HTTP_IDEMPOTENCY_KEY="idem-1",
        HTTP_X_REQUEST_ID="django-door-1",
    )

    assert r.status_code == 200, r.content
    assert r["X-Request-Id"] == "django-door-1"
    assert stub.chat_requests[0].headers["X-Request-Id"] == "django-door-1"


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_a_stream_through_django_forwards_the_request_id_to_the_node(api_client, user_client, node_on):
    """A stream's node call is made while its parts are sent, after the middleware let the id go: it is set again
    around each part."""
    fund(user_client[0], "1.00")
    _node, stub = node_on()

    r = api_client.post(
        "/api/v1/inference/stream/",
        {"question_text": "hi", "desired_model": MODEL},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {user_client[1]}",
        HTTP_X_REQUEST_ID="streamed-3",
    )
    body = streamed(r)

    assert r.status_code == 200 and "[DONE]" in body
    assert r["X-Request-Id"] == "streamed-3"
    assert stub.chat_requests[0].headers["X-Request-Id"] == "streamed-3"
    assert request_id.current.get() is None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_request_served_by_a_celery_worker_forwards_its_id_to_the_node(
    api_client, user_client, node_on, start_worker
):
    fund(user_client[0], "1.00")
    _node, stub = node_on()
    start_worker()

    r = api_client.post(
        "/api/v1/inference/",
        {"question_text": "hi", "desired_model": MODEL},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {user_client[1]}",
        HTTP_X_REQUEST_ID="queued-7",
    )

    assert r.status_code == 201, r.content
    assert r["X-Request-Id"] == "queued-7"
    assert stub.chat_requests[0].headers["X-Request-Id"] == "queued-7"
