"""GET client/usage/ (API.md §12): roll-ups by day, key and model whose costs equal the ledger's charges."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clients.choices import LedgerTransactionKind
from clients.models import LedgerEntry
from clients.services import api_key_create
from inference.choices import InferenceStatus
from inference.models import InferenceRequest
from inference.usage_rollup import span_end, span_start, usage_list_rollup
from tests.conftest import bearer
from tests.factories import make_requests, rows_read
from tests.inference.conftest import MODEL, fund

URL = "/api/v1/client/usage/"
OTHER = "stub/other"


def _chat(api_client, raw, model=MODEL):  # type: ignore[no-untyped-def]
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    r = api_client.post("/v1/chat/completions", body, format="json", **bearer(raw))
    assert r.status_code == 200, r.content


@pytest.mark.django_db(transaction=True)
def test_usage_by_key_and_model_sums_to_the_ledgers_charges(api_client, user_client, other_user, node_on):
    client, raw = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    node_on("other", model=OTHER, input_price="500.00", output_price="500.00")
    app, app_raw = api_key_create(client=client, name="app")
    fund(other_user[0], "10.00")
    _chat(api_client, raw)
    _chat(api_client, app_raw)
    _chat(api_client, app_raw, model=OTHER)
    _chat(api_client, other_user[1])  # someone else's: never shown

    by_key = api_client.get(URL, {"group_by": "key"}, **bearer(raw))
    by_model = api_client.get(URL, {"group_by": "model"}, **bearer(raw))
    by_day = api_client.get(URL, **bearer(raw))

    assert by_key.status_code == 200, by_key.content
    keys = {(row["key"]["name"], row["requests"]) for row in by_key.json()}
    assert keys == {("test", 1), ("app", 2)}
    assert {(row["model"], row["requests"]) for row in by_model.json()} == {(MODEL, 2), (OTHER, 1)}
    [today] = by_day.json()
    assert (today["period"], today["requests"], today["key"], today["model"]) == (
        timezone.now().date().isoformat(),
        3,
        None,
        None,
    )
    charged = (
        -LedgerEntry.objects.filter(account__client=client)
        .exclude(transaction__kind=LedgerTransactionKind.CREDIT)
        .aggregate(s=Sum("amount"))["s"]
    )
    for rows in (by_key.json(), by_model.json(), by_day.json()):
        assert sum(Decimal(row["cost"]) for row in rows) == charged > 0
    assert sum(row["prompt_tokens"] + row["completion_tokens"] for row in by_model.json()) > 0
    assert app.pk in {row["key"]["id"] for row in by_key.json()}


@pytest.mark.django_db(transaction=True)
def test_usage_span_and_combined_groups(api_client, user_client, node_on):
    fund(user_client[0])
    node_on()
    _chat(api_client, user_client[1])
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    today = timezone.now().date().isoformat()

    later = api_client.get(URL, {"from": tomorrow}, **bearer(user_client[1]))
    within = api_client.get(URL, {"from": today, "to": today, "group_by": "day,model"}, **bearer(user_client[1]))

    assert later.status_code == 200 and later.json() == []
    [row] = within.json()
    assert (row["period"], row["model"], row["requests"]) == (today, MODEL, 1)


def test_usage_bad_query_is_400_naming_it_and_anonymous_401(api_client, user_client):
    for params, attr in [
        ({"group_by": "week"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"from": "0000-00-00"}, "from"),  # well-formed but no date (a 500 once: found by the fuzz run)
        ({"to": "2026-02-30T10:00:00Z"}, "to"),
    ]:
        r = api_client.get(URL, params, **bearer(user_client[1]))
        assert r.status_code == 400, (params, r.content)
        error = r.json()["errors"][0]
        assert error["code"] == "invalid_usage_query" and error["detail"].startswith(f"`{attr}`: ")
    # Unknown query parameters are ignored and empty ones mean "not given", as on every list of this API.
    assert api_client.get(URL, {"x": "1", "to": ""}, **bearer(user_client[1])).status_code == 200
    assert api_client.get(URL).status_code == 401


def test_a_span_reads_the_requests_finished_in_it_not_the_clients_history(user_client):
    """A roll-up over `from`..`to` reads that span's rows (the (client, finished_at) index), however many the
    client has outside it."""
    client = user_client[0]
    now = timezone.now()
    make_requests(client=client, status=InferenceStatus.COMPLETED, count=3000, finished_at=now - timedelta(days=60))
    make_requests(client=client, status=InferenceStatus.COMPLETED, count=4, finished_at=now - timedelta(minutes=5))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inference_inferencerequest")
    today = now.date()

    with CaptureQueriesContext(connection) as queries:
        rows = usage_list_rollup(
            client=client, group_by=["day"], start=span_start(today - timedelta(days=1)), end=span_end(today)
        )
    assert sum(row["requests"] for row in rows) == 4
    (query,) = queries.captured_queries

    assert rows_read(query["sql"], InferenceRequest._meta.db_table) <= 4
