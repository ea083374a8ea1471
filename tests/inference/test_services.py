"""Inference services without HTTP: the claim, the sweeper's bounds, and tasks that are safe to run twice."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from config.celery import app as celery_app
from inference import services
from inference.choices import InferenceChannel, InferenceStatus
from inference.models import InferenceRequest
from inference.tasks import inference_dispatch as inference_dispatch_task
from inference.tasks import inference_requeue_stuck as inference_requeue_stuck_task
from tests.inference.conftest import MODEL, balance, fund


def _open(client, **kwargs):  # type: ignore[no-untyped-def]
    return services.inference_open(client_id=client.pk, desired_model=MODEL, question_text="hi", **kwargs).request


def test_a_request_claimed_by_one_dispatch_is_not_run_again(user_client, node_on, django_capture_on_commit_callbacks):
    client, _ = user_client
    fund(client)
    _, stub = node_on()
    with django_capture_on_commit_callbacks(execute=False):
        req = _open(client)

    inference_dispatch_task.delay(req.pk)
    inference_dispatch_task.delay(req.pk)  # a redelivery

    req.refresh_from_db()
    assert (req.status, req.attempts) == (InferenceStatus.COMPLETED, 1)
    assert len(stub.chat_requests) == 1


def test_the_sweeper_requeues_a_stuck_request_then_fails_it_for_good_and_refunds(
    user_client, node_on, settings, django_capture_on_commit_callbacks
):
    settings.INFERENCE_MAX_DISPATCHES = 2
    client, _ = user_client
    fund(client, "1.00")
    node_on()
    with django_capture_on_commit_callbacks(execute=False):
        req = _open(client)
    later = timezone.now() + timedelta(seconds=settings.INFERENCE_DEADLINE_S + 1)
    # Two dispatches that each die after claiming (the row stays running).
    InferenceRequest.objects.filter(pk=req.pk).update(status=InferenceStatus.RUNNING, attempts=1)

    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert services.inference_requeue_stuck(now=later) == {"requeued": 1, "failed": 0}
    assert len(sent) == 1  # the dispatch is sent again when the sweep commits
    InferenceRequest.objects.filter(pk=req.pk).update(status=InferenceStatus.RUNNING, attempts=2)
    much_later = later + timedelta(seconds=settings.INFERENCE_DEADLINE_S + 1)

    assert services.inference_requeue_stuck(now=much_later) == {"requeued": 0, "failed": 1}
    req.refresh_from_db()
    assert (req.status, req.error_code) == (InferenceStatus.FAILED, "deadline_exceeded")
    assert balance(client) == Decimal("1.00")
    assert services.inference_requeue_stuck(now=much_later) == {"requeued": 0, "failed": 0}


def test_a_stuck_direct_request_is_failed_and_refunded_at_once(user_client, node_on, settings):
    client, _ = user_client
    fund(client, "1.00")
    node_on()
    req = _open(client, channel=InferenceChannel.WEB)
    assert balance(client) < Decimal("1.00")

    later = timezone.now() + timedelta(seconds=settings.INFERENCE_DEADLINE_S + 1)
    assert inference_requeue_stuck_task.delay().get() == {"requeued": 0, "failed": 0}
    assert services.inference_requeue_stuck(now=later) == {"requeued": 0, "failed": 1}

    req.refresh_from_db()
    assert req.status == InferenceStatus.FAILED
    assert balance(client) == Decimal("1.00")


def test_a_late_finish_after_the_sweeper_took_the_row_back_charges_nothing(user_client, node_on, settings):
    from inference.metering import Delivery, PromptSize
    from inference.routing import route

    client, _ = user_client
    fund(client, "1.00")
    node_on()
    req = _open(client, channel=InferenceChannel.WEB)
    later = timezone.now() + timedelta(seconds=settings.INFERENCE_DEADLINE_S + 1)
    services.inference_requeue_stuck(now=later)
    delivery = Delivery(candidate=route(model=MODEL)[0], started=True, relayed_bytes=40, relayed_chars=40)

    assert services.inference_finish(req=req, attempt=1, delivery=delivery, prompt=PromptSize.of({})) is None
    assert balance(client) == Decimal("1.00")


def test_beat_runs_the_stuck_request_sweep():
    by_task = {entry["task"]: entry for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}

    assert by_task["inference.tasks.inference_requeue_stuck"]["schedule"] == timedelta(
        seconds=django_settings.INFERENCE_SWEEP_INTERVAL_S
    )
    assert "inference.tasks.inference_dispatch" in celery_app.tasks
    task = celery_app.tasks["inference.tasks.inference_dispatch"]
    assert task.acks_late and task.reject_on_worker_lost


@pytest.mark.parametrize("max_tokens", [1, 512])
def test_the_hold_covers_the_most_the_request_can_cost(user_client, node_on, max_tokens):
    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="3.00", output_price="5.00")
    node_on("dearer", input_price="4.00", output_price="9.00")

    req = _open(client, max_tokens=max_tokens)

    # The dearer node's prices: the prompt's billable cap at 4/1M, max_tokens at 9/1M.
    from inference.metering import PromptSize

    cap = PromptSize.of(services.chat_body(model=MODEL, question_text="hi", max_tokens=max_tokens)).cap
    expected = ((Decimal(cap) * 4 + Decimal(max_tokens) * 9) / Decimal(1_000_000)).quantize(Decimal("0.000001"))
    assert req.held_amount == expected
