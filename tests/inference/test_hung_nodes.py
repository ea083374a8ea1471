"""A hung node does not hold a request hostage (API.md §10): a node that accepts a request and sends nothing is
given up after INFERENCE_FIRST_TOKEN_TIMEOUT_S, cooled down and the request answered by the next node, on every
door (seed sync through a real worker, seed stream, batch, the Django /v1 view, the lean /v1 path); a slow but
steady stream is never cut."""

import time

import openai
import pytest
from django.utils import timezone

from inference.models import InferenceRequest
from llm_models.models import Node
from tests.conftest import bearer
from tests.inference.conftest import MODEL, fund, settle_usage, sse_json, start_service, streamed
from tests.llm_models.conftest import _stop, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FIRST_TOKEN_S = 2
# The hung node costs the first-token timeout; the rest is the good node's answer on a loaded machine.
BOUND_S = FIRST_TOKEN_S + 6
MESSAGES = [{"role": "user", "content": "Say something"}]
SEED = "/api/v1/inference/"


@pytest.fixture
def hung_then_good(node_on):  # type: ignore[no-untyped-def]
    """Two nodes for MODEL: `hung` ranked first (lower latency) accepts requests and sends nothing; `good` answers."""
    hung, hung_stub = node_on("hung", latency_ewma_ms=10.0)
    hung_stub.behaviour.hang = True
    good, good_stub = node_on("good", latency_ewma_ms=900.0)
    good_stub.behaviour.answer = "from the good node"
    return hung, hung_stub, good


@pytest.fixture
def first_token_timeout(settings):  # type: ignore[no-untyped-def]
    settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S = FIRST_TOKEN_S


def _streamed_text(response) -> str:  # type: ignore[no-untyped-def]
    """The answer text of a Django streaming response's chunk events."""
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_json(streamed(response)) if c.get("choices")
    )


def _assert_hung_node_tried_and_cooled_down(hung, hung_stub) -> None:  # type: ignore[no-untyped-def]
    assert len(hung_stub.chat_requests) >= 1
    hung.refresh_from_db()
    assert hung.cooldown_until is not None and hung.cooldown_until > timezone.now()


# --- Django doors, in process -------------------------------------------------------------------------------


@pytest.mark.usefixtures("first_token_timeout")
@pytest.mark.parametrize("stream", [False, True])
def test_the_django_v1_view_fails_over_from_a_hung_node_within_the_first_token_timeout(
    api_client, user_client, hung_then_good, stream
):
    fund(user_client[0], "1.00")
    hung, hung_stub, good = hung_then_good

    began = time.monotonic()
    r = api_client.post(
        "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stream": stream}, format="json",
        **bearer(user_client[1]),
    )  # fmt: skip
    text = _streamed_text(r) if stream else r.json()["choices"][0]["message"]["content"]
    elapsed = time.monotonic() - began

    assert r.status_code == 200
    assert text == "from the good node"
    assert FIRST_TOKEN_S - 0.5 < elapsed < BOUND_S
    assert InferenceRequest.objects.get().node_id == good.pk
    _assert_hung_node_tried_and_cooled_down(hung, hung_stub)


@pytest.mark.usefixtures("first_token_timeout")
def test_the_seed_stream_fails_over_from_a_hung_node_within_the_first_token_timeout(
    api_client, user_client, hung_then_good
):
    fund(user_client[0], "1.00")
    hung, hung_stub, good = hung_then_good

    began = time.monotonic()
    r = api_client.post(
        f"{SEED}stream/", {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(user_client[1])
    )
    text = _streamed_text(r)
    elapsed = time.monotonic() - began

    assert r.status_code == 200
    assert text == "from the good node"
    assert FIRST_TOKEN_S - 0.5 < elapsed < BOUND_S
    req = InferenceRequest.objects.get()
    assert (req.status, req.node_id, req.answer_text) == ("completed", good.pk, "from the good node")
    _assert_hung_node_tried_and_cooled_down(hung, hung_stub)


# --- The seed resource and batch through a real Celery worker -----------------------------------------------


@pytest.mark.worker
def test_the_seed_sync_request_and_a_batch_fail_over_from_a_hung_node_through_a_worker(
    api_client, user_client, hung_then_good, start_worker
):
    client, key = user_client
    fund(client, "1.00")
    hung, hung_stub, good = hung_then_good
    worker = start_worker(INFERENCE_FIRST_TOKEN_TIMEOUT_S=str(FIRST_TOKEN_S))
    wait_until(lambda: " ready." in worker.log_path.read_text(), timeout=60, process=worker)

    began = time.monotonic()
    r = api_client.post(SEED, {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(key))
    elapsed = time.monotonic() - began

    assert r.status_code == 201, r.content  # not 202 after the sync wait
    answer = r.json()
    assert (answer["status"], answer["node"], answer["answer_text"]) == ("completed", good.pk, "from the good node")
    assert FIRST_TOKEN_S - 0.5 < elapsed < BOUND_S
    _assert_hung_node_tried_and_cooled_down(hung, hung_stub)

    Node.objects.filter(pk=hung.pk).update(cooldown_until=None, consecutive_failures=0)  # first choice again
    tried = len(hung_stub.chat_requests)
    batch = api_client.post(f"{SEED}batch/", {"model": MODEL, "prompts": ["a"]}, format="json", **bearer(key))
    assert batch.status_code == 202
    wait_until(
        lambda: not InferenceRequest.objects.exclude(status="completed").exists(), timeout=BOUND_S, process=worker
    )
    item = InferenceRequest.objects.get(pk=batch.json()["items"][0]["id"])
    assert (item.node_id, item.answer_text) == (good.pk, "from the good node")
    assert len(hung_stub.chat_requests) == tried + 1


# --- The lean /v1 path, in a real uvicorn process -----------------------------------------------------------


@pytest.fixture(scope="module")
def lean_service(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """uvicorn with a 2 s first-token timeout and a 3 s gap limit between tokens."""
    with django_db_blocker.unblock():
        process = start_service(
            tmp_path_factory.mktemp("uvicorn") / "server.log",
            INFERENCE_FIRST_TOKEN_TIMEOUT_S=str(FIRST_TOKEN_S),
            INFERENCE_STREAM_IDLE_TIMEOUT_S="3",
        )
    try:
        yield process
    finally:
        _stop(process)


def _sdk(service, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{service.base_url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.mark.live_server
@pytest.mark.usefixtures("usage_journal_clean")
@pytest.mark.parametrize("stream", [False, True])
def test_the_lean_v1_path_fails_over_from_a_hung_node_within_the_first_token_timeout(
    lean_service, user_client, hung_then_good, stream
):
    client, key = user_client
    fund(client, "1.00")
    hung, hung_stub, good = hung_then_good

    began = time.monotonic()
    reply = _sdk(lean_service, key).chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
    else:
        text = reply.choices[0].message.content
    elapsed = time.monotonic() - began

    assert text == "from the good node"
    assert FIRST_TOKEN_S - 0.5 < elapsed < BOUND_S
    settle_usage()
    assert InferenceRequest.objects.get().node_id == good.pk
    wait_until(lambda: Node.objects.get(pk=hung.pk).cooldown_until is not None, timeout=5)
    _assert_hung_node_tried_and_cooled_down(hung, hung_stub)


@pytest.mark.live_server
@pytest.mark.usefixtures("usage_journal_clean")
def test_a_nine_second_stream_with_a_token_every_second_is_not_cut(lean_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _node, stub = node_on()
    stub.slow_steady(9)  # longer than the first-token timeout (2 s) and each gap (1 s) within the gap limit (3 s)

    began = time.monotonic()
    chunks = list(_sdk(lean_service, key).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    elapsed = time.monotonic() - began

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"t{i}" for i in range(10))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert elapsed >= 9
    settle_usage()
    assert InferenceRequest.objects.get().status == "completed"
