"""No usage is lost, or billed twice, whichever process dies when (inference/usage_journal.py's guarantee).

The lean /v1 path answers before anything reaches PostgreSQL: its usage waits in the Redis journal. These tests
kill the real processes at the moments that matter: the web server after it answered (and with requests still
running), and a drainer after it applied entries but before it acknowledged them.
"""

import concurrent.futures
import json
import os
import signal
import threading
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum
from django.utils import timezone

from clients import ledger
from clients.choices import HoldStatus, LedgerTransactionKind
from clients.models import Hold, LedgerEntry, LedgerTransaction
from inference.journal import entries as usage
from inference.journal import stream as usage_journal
from inference.models import InferenceRequest
from tests.inference.conftest import MODEL, balance, fund, start_service
from tests.llm_models.conftest import _stop

pytestmark = [
    pytest.mark.live_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("usage_journal_clean"),
]
MESSAGES = [{"role": "user", "content": "Say something nice"}]


def chat(base_url: str, key: str, *, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 20},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def kill(process) -> None:  # type: ignore[no-untyped-def]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_usage_answered_before_the_server_is_killed_is_recorded_and_charged_once(
    user_client, node_on, tmp_path, usage_journal_clean
):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "You are great"
    # Its leases stay open (neither expired nor idle) until it is killed.
    server = start_service(tmp_path / "server.log", INFERENCE_LEASE_TTL_S="3600", INFERENCE_LEASE_IDLE_S="3600")
    try:
        answered = [chat(server.base_url, key) for _ in range(5)]
        assert [r.status_code for r in answered] == [200] * 5

        # Five more reach the node and wait there; the server dies with them in flight.
        stub.behaviour.gate = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
            in_flight = [pool.submit(chat, server.base_url, key, timeout=20) for _ in range(5)]
            deadline = time.monotonic() + 15
            while len(stub.chat_requests) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(stub.chat_requests) == 10
            kill(server)
            stub.behaviour.gate.set()
            for future in in_flight:
                with pytest.raises(httpx.HTTPError):
                    future.result()
    finally:
        _stop(server)

    # The answers left the server before anything reached PostgreSQL: their usage is in the journal only.
    assert InferenceRequest.objects.count() == 0
    assert usage_journal.pending() == 5

    assert usage_journal.drain() == 5
    records = list(InferenceRequest.objects.order_by("id"))
    assert len(records) == 5 and {r.status for r in records} == {"completed"}
    assert len({r.request_key for r in records}) == 5
    spent = sum(r.cost for r in records)
    assert spent > 0 and all(r.cost == records[0].cost for r in records)
    charged = LedgerTransaction.objects.filter(kind=LedgerTransactionKind.USAGE)
    # The whole charge went to operator, platform and treasury (the payer's positive line is the release from its
    # lease that pays for its charge lines: one per request, ref inference:<id>).
    earned = LedgerEntry.objects.filter(transaction__in=charged, amount__gt=0).exclude(account__client=client)
    assert earned.aggregate(s=Sum("amount"))["s"] == spent
    paid = LedgerEntry.objects.filter(transaction__in=charged, account__client=client, kind="inference")
    assert sorted(paid.values_list("ref", "amount")) == sorted((f"inference:{r.pk}", -r.cost) for r in records)
    assert ledger.reconcile() == []

    # Draining again changes nothing.
    assert usage_journal.drain() == 0
    assert InferenceRequest.objects.count() == 5

    # The dead process never closed its lease: the stale-lease sweep gives the rest back.
    lease = Hold.objects.get(key__startswith="lease:")
    assert lease.status == HoldStatus.HELD and lease.consumed == spent
    assert usage.release_stale_leases(now=timezone.now() + timedelta(hours=2)) == 1
    assert balance(client) == Decimal("1.00") - spent
    assert ledger.reconcile() == []
    assert sum(LedgerEntry.objects.values_list("amount", flat=True)) == 0


def test_a_drainer_killed_after_applying_and_before_acknowledging_changes_nothing_when_redone(
    user_client, node_on, tmp_path, usage_journal_clean, settings
):
    client, key = user_client
    fund(client, "1.00")
    node_on(input_price="1000.00", output_price="1000.00")
    server = start_service(tmp_path / "server.log", INFERENCE_LEASE_IDLE_S="3600")  # one lease for all three
    try:
        assert [chat(server.base_url, key).status_code for _ in range(3)] == [200] * 3
    finally:
        _stop(server)  # a clean stop: its lease is retired and closed in the journal
    deadline = time.monotonic() + 10
    while usage_journal.pending() < 4 and time.monotonic() < deadline:  # 3 uses and the close
        time.sleep(0.1)

    # A drainer reads the entries and applies them (its transaction commits), then dies before XACK.
    journal = usage_journal_clean
    usage_journal._ensure_group(journal)
    read = journal.xreadgroup(usage_journal.GROUP, "doomed-drainer", {usage_journal.STREAM: ">"}, count=100)
    messages = read[0][1]
    assert len(messages) == 4
    usage.apply([json.loads(fields[b"e"]) for _, fields in messages])
    applied_rows = InferenceRequest.objects.count()
    spent = sum(InferenceRequest.objects.values_list("cost", flat=True))
    assert applied_rows == 3 and balance(client) == Decimal("1.00") - spent

    # The next drain takes the dead drainer's entries over and applies them again: nothing changes.
    settings.USAGE_DRAIN_CLAIM_IDLE_S = 0
    assert usage_journal.drain() == 4
    assert usage_journal.pending() == 0
    assert InferenceRequest.objects.count() == 3
    assert balance(client) == Decimal("1.00") - spent
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.USAGE).count() == 1
    assert not Hold.objects.filter(key__startswith="lease:", status=HoldStatus.HELD).exists()
    assert ledger.reconcile() == []


def test_with_redis_down_usage_goes_straight_to_postgresql(user_client, node_on, tmp_path):
    client, key = user_client
    fund(client, "1.00")
    node_on(input_price="1000.00", output_price="1000.00")
    # Nothing listens on port 9 (discard): every append fails, as with Redis down.
    server = start_service(tmp_path / "server.log", USAGE_JOURNAL_URL="redis://127.0.0.1:9/0")
    try:
        r = chat(server.base_url, key)
        assert r.status_code == 200
        record = InferenceRequest.objects.get()  # written before the answer, without any drain
        assert record.status == "completed" and record.cost > 0
    finally:
        _stop(server)
    deadline = time.monotonic() + 10
    while Hold.objects.filter(key__startswith="lease:", status=HoldStatus.HELD).exists():
        assert time.monotonic() < deadline, "the lease was not closed on shutdown"
        time.sleep(0.1)
    assert balance(client) == Decimal("1.00") - record.cost
    assert ledger.reconcile() == []


def test_with_redis_down_a_key_budget_is_kept_on_the_databases_figures(user_client, node_on, tmp_path):
    from clients.services import api_key_create

    client, _ = user_client
    fund(client, "1.00")
    node_on(input_price="1000.00", output_price="1000.00")
    key, raw = api_key_create(client=client, name="capped", budget=Decimal("0.0001"), rpm=10)
    # The key limits' Redis is the journal's (KEY_LIMITS_REDIS_URL defaults to it): unreachable too.
    server = start_service(tmp_path / "server.log", USAGE_JOURNAL_URL="redis://127.0.0.1:9/0")
    try:
        first = chat(server.base_url, raw)
        second = chat(server.base_url, raw)
    finally:
        _stop(server)

    key.refresh_from_db()
    assert first.status_code == 200 and key.spent == InferenceRequest.objects.get().cost > Decimal("0.0001")
    assert second.status_code == 402 and second.json()["error"]["code"] == "key_budget_exceeded"
