"""core/idempotency.py on its own (a handler that counts its runs) and under a concurrent retry of a real charge."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory

from clients import ledger
from core import idempotency
from core.idempotency import IdempotencyKeyInUse, IdempotencyKeyReused, with_idempotency
from core.models import IdempotencyRecord
from core.tasks import idempotency_record_prune
from tests.conftest import bearer
from tests.factories import make_client

PATH = "/api/v1/things/"


def make_request(user, body: dict, key: str | None = "key-1", path: str = PATH) -> Request:  # type: ignore[no-untyped-def]
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    request = Request(APIRequestFactory().post(path, body, format="json", **headers), parsers=[JSONParser()])
    request.user = user
    return request


class Counting:
    """A handler that records the refs it ran with and answers with a fresh number each time."""

    def __init__(self, status: int = 201) -> None:
        self.refs: list[str] = []
        self.status = status

    def __call__(self, ref: str) -> Response:
        self.refs.append(ref)
        return Response({"run": len(self.refs), "amount": Decimal("1.50")}, status=self.status)


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return make_client()[0].user


def test_the_first_request_runs_and_a_retry_replays_its_response(user):
    handler = Counting()

    first = with_idempotency(make_request(user, {"a": 1, "b": [1, 2]}), handler)
    again = with_idempotency(make_request(user, {"b": [1, 2], "a": 1}), handler)

    assert len(handler.refs) == 1
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.data == {"run": 1, "amount": "1.50"}
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_handler_ref_names_the_record(user):
    handler = Counting()

    with_idempotency(make_request(user, {}), handler)

    assert handler.refs == [f"idem:{IdempotencyRecord.objects.get().pk}"]


def test_another_body_under_the_same_key_is_refused(user):
    handler = Counting()
    with_idempotency(make_request(user, {"a": 1}), handler)

    with pytest.raises(IdempotencyKeyReused):
        with_idempotency(make_request(user, {"a": 2}), handler)

    assert len(handler.refs) == 1


def test_keys_are_per_user_and_per_path(user):
    other = make_client()[0].user
    handler = Counting()

    with_idempotency(make_request(user, {}), handler)
    with_idempotency(make_request(other, {}), handler)
    with_idempotency(make_request(user, {}, path="/api/v1/other/"), handler)

    assert len(handler.refs) == 3


def test_without_a_key_the_handler_always_runs_with_a_fresh_ref(user):
    handler = Counting()

    with_idempotency(make_request(user, {}, key=None), handler)
    with_idempotency(make_request(user, {}, key=None), handler)

    assert len(set(handler.refs)) == 2
    assert not IdempotencyRecord.objects.exists()


def test_a_failing_handler_leaves_the_key_free_for_a_retry(user):
    def failing(ref: str) -> Response:
        raise RuntimeError("node down")

    with pytest.raises(RuntimeError):
        with_idempotency(make_request(user, {"a": 1}), failing)
    handler = Counting()
    with_idempotency(make_request(user, {"a": 2}), handler)

    assert len(handler.refs) == 1


def test_an_error_response_is_not_stored(user):
    with_idempotency(make_request(user, {}), Counting(status=503))
    handler = Counting()
    response = with_idempotency(make_request(user, {}), handler)

    assert response.status_code == 201
    assert len(handler.refs) == 1


def test_a_retry_while_the_first_still_runs_is_409(user):
    def slow(ref: str) -> Response:
        with pytest.raises(IdempotencyKeyInUse):
            with_idempotency(make_request(user, {}), Counting())
        return Response({}, status=201)

    assert with_idempotency(make_request(user, {}), slow).status_code == 201


def test_a_crashed_attempt_is_taken_over_after_the_timeout_under_the_same_ref(user):
    record = IdempotencyRecord.objects.create(
        user=user,
        key="key-1",
        method="POST",
        path=PATH,
        fingerprint=idempotency._fingerprint(make_request(user, {})),
        started_at=timezone.now() - idempotency.IN_PROGRESS_TIMEOUT - timedelta(seconds=1),
    )
    handler = Counting()

    with_idempotency(make_request(user, {}), handler)

    assert handler.refs == [f"idem:{record.pk}"]


def test_a_key_older_than_a_day_starts_a_new_request(user):
    handler = Counting()
    with time_machine.travel(timezone.now() - idempotency.KEY_TTL - timedelta(minutes=1)):
        with_idempotency(make_request(user, {}), handler)

    with_idempotency(make_request(user, {"changed": True}), handler)

    assert len(handler.refs) == 2
    assert handler.refs[0] != handler.refs[1]


def test_the_prune_task_deletes_records_older_than_a_day(user):
    with time_machine.travel(timezone.now() - timedelta(days=2)):
        with_idempotency(make_request(user, {}, key="old"), Counting())
    with_idempotency(make_request(user, {}, key="new"), Counting())

    assert idempotency_record_prune() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_a_credit_credit_once():
    client, _ = make_client()
    _, admin_key = make_client(staff=True)
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def post() -> None:
        try:
            barrier.wait()
            r = APIClient().post(
                f"/api/v1/client/list/{client.pk}/credit/",
                {"amount": "10"},
                format="json",
                HTTP_IDEMPOTENCY_KEY="same-retry",
                **bearer(admin_key),
            )
            statuses.append(r.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert ledger.balance_of(client_id=client.pk) == Decimal("10")
    assert 200 in statuses
    assert set(statuses) <= {200, 409}
    assert ledger.reconcile() == []
