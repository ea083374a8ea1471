"""Sticky sessions (inference/sessions.py) in Redis and in Django's cache, and with the router and real nodes."""

import time
from decimal import Decimal

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from inference.errors import BadChatRequest
from inference.routing import Candidate
from inference.v1.sessions import (
    prefer_node,
    session_key,
    session_node,
    session_node_async,
    session_of,
    session_remember,
    session_remember_async,
)
from tests.inference.conftest import MODEL

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def cand(node_id: int) -> Candidate:
    return Candidate(
        node_id=node_id,
        owner_id=1,
        base_url="http://127.0.0.1:9/v1",
        api_key_encrypted="",
        input_price_per_million=Decimal(1),
        output_price_per_million=Decimal(1),
    )


@pytest.fixture
def session_redis():  # type: ignore[no-untyped-def]
    """The session store's Redis, emptied of this suite's keys before and after."""
    client = redis.Redis.from_url(settings.INFERENCE_SESSION_REDIS_URL)

    def clean() -> None:
        for key in client.scan_iter("inference:session:*"):
            client.delete(key)

    clean()
    yield client
    clean()
    client.close()


@pytest.fixture
def cache_store(settings):  # type: ignore[no-untyped-def]
    settings.INFERENCE_SESSION_REDIS_URL = ""


def test_the_session_is_session_id_else_prompt_cache_key():
    assert session_of(BODY) is None
    assert session_of({**BODY, "prompt_cache_key": "p"}) == "p"
    assert session_of({**BODY, "session_id": "s", "prompt_cache_key": "p"}) == "s"


@pytest.mark.parametrize(("field", "value"), [("session_id", 7), ("session_id", ""), ("prompt_cache_key", "x" * 257)])
def test_a_bad_session_is_a_400_naming_the_field(field, value):
    with pytest.raises(BadChatRequest) as exc:
        session_of({**BODY, field: value})

    assert exc.value.attr == field


def test_the_remembered_node_goes_first_only_while_it_is_a_candidate():
    ranked = [cand(1), cand(2), cand(3)]

    assert [c.node_id for c in prefer_node(ranked, 3)] == [3, 1, 2]
    assert [c.node_id for c in prefer_node(ranked, 9)] == [1, 2, 3]
    assert prefer_node(ranked, None) == ranked


def test_redis_remembers_a_session_per_client_with_the_ttl(session_redis, settings):
    settings.INFERENCE_SESSION_TTL_S = 600

    session_remember(client_id=1, session="chat-1", node_id=5)

    assert session_node(client_id=1, session="chat-1") == 5
    assert session_node(client_id=2, session="chat-1") is None  # another client's session is its own
    assert 590 < session_redis.ttl(session_key(client_id=1, session="chat-1")) <= 600


def test_remembering_again_moves_the_session(session_redis):
    session_remember(client_id=1, session="chat-1", node_id=5)
    session_remember(client_id=1, session="chat-1", node_id=6)

    assert session_node(client_id=1, session="chat-1") == 6


def test_a_session_unused_for_the_ttl_is_forgotten(session_redis, settings):
    settings.INFERENCE_SESSION_TTL_S = 1
    session_remember(client_id=1, session="chat-1", node_id=5)

    session_redis.pexpire(session_key(client_id=1, session="chat-1"), 1)  # Redis' own clock: let it lapse now
    time.sleep(0.01)
    assert session_node(client_id=1, session="chat-1") is None


def test_the_async_variants_share_the_sync_store(session_redis):
    async def roundtrip() -> tuple[int | None, int | None]:
        await session_remember_async(client_id=1, session="s", node_id=8)
        return await session_node_async(client_id=1, session="s"), await session_node_async(client_id=1, session="t")

    assert async_to_sync(roundtrip)() == (8, None)
    assert session_node(client_id=1, session="s") == 8


def test_without_redis_sessions_live_in_djangos_cache(cache_store):
    session_remember(client_id=1, session="s", node_id=4)

    async def read() -> int | None:
        await session_remember_async(client_id=1, session="t", node_id=5)
        return await session_node_async(client_id=1, session="s")

    assert async_to_sync(read)() == 4
    assert session_node(client_id=1, session="t") == 5


def test_an_unreachable_store_makes_the_request_unsticky_not_an_error(settings):
    settings.INFERENCE_SESSION_REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port

    session_remember(client_id=1, session="s", node_id=4)
    assert session_node(client_id=1, session="s") is None


# --- With the router and real nodes ---------------------------------------------------------------------------
