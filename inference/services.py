"""Writes for inference: open a request (row + hold), run it on a worker, finish it (settle or release), sweep.

Money moves only through clients/ledger.py: one hold when a request is opened (its most possible cost), then
exactly one settle (the metered cost, split to the node's operator) or release. Both are keyed by the request's
unique `request_key` (the hold is its `ledger_hold_key`), so a retried task or a racing sweeper cannot charge
twice, and only the dispatch that still owns the row (`attempts` unchanged since its claim) may finish it.
"""

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app as celery_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerEntryKind
from clients.models import Client
from core import metrics
from core.errors import NotFound
from inference import metering, relay, routing, routing_lessons
from inference.choices import InferenceChannel, InferenceEndpoint, InferenceStatus
from inference.errors import InferenceNotEditable, InferenceRunning, ModelNotFound, NoCapacity, StreamNotReplayable
from inference.metering import Delivery, PromptSize
from inference.models import InferenceBatch, InferenceRequest
from inference.request_bodies import chat_body, sized_body
from inference.routing import Candidate
from plans.covered import plan_usage_pay

UNFINISHED = (InferenceStatus.QUEUED, InferenceStatus.RUNNING)
DISPATCH_TASK = "inference.tasks.inference_dispatch"


@dataclass
class Opened:
    """A request ready to relay: its row (hold placed), the nodes to try, and the body to send them."""

    request: InferenceRequest
    candidates: list[Candidate]
    body: dict
    prompt: PromptSize


def _dispatch_on_commit(request_id: int) -> None:
    """Enqueue the dispatch task when the transaction commits. By name: tasks import services, never the reverse
    (inference/apps.py imports tasks at start-up, so the name is registered in every process)."""
    celery_app.tasks[DISPATCH_TASK].delay_on_commit(request_id)


def _deadline(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.INFERENCE_DEADLINE_S)


def ledger_ref(request_id: int) -> str:
    """What the client's ledger lines of a request name (API.md §10 `ref`)."""
    return f"inference:{request_id}"


def new_request_key(ref: str | None = None) -> str:
    """A request row's unique key (its public id is `chatcmpl-<key>` on /v1): derived from `ref` when the request
    has one (an Idempotency-Key), so the same logical request cannot be opened twice; random otherwise."""
    if ref:
        return hashlib.sha256(ref.encode()).hexdigest()[:32]
    return secrets.token_hex(16)  # 32 hex digits, as a uuid4's, at a fraction of its cost


def _hold(req: InferenceRequest) -> None:
    if req.held_amount > 0 and not req.plan_covered:  # a plan-covered request holds nothing (plans/covered.py)
        ledger.hold_place(
            client_id=req.client_id,
            amount=req.held_amount,
            key=req.ledger_hold_key,
            ref=ledger_ref(req.pk),
            memo=f"inference #{req.pk}",
        )


def _release(req: InferenceRequest) -> None:
    if req.held_amount > 0 and not req.plan_covered:
        ledger.hold_release(key=req.ledger_hold_key)


@transaction.atomic
def inference_open(
    *,
    client_id: int,
    desired_model: str,
    question_text: str,
    max_tokens: int | None = None,
    body: dict | None = None,
    channel: str = InferenceChannel.WORKER,
    batch: InferenceBatch | None = None,
    candidates: list[Candidate] | None = None,
    ref: str | None = None,
    request_key: str | None = None,
    now: datetime | None = None,
    plan_covered: bool = False,
    endpoint: str = InferenceEndpoint.CHAT,
    prompt: PromptSize | None = None,
    api_key_id: int | None = None,
) -> Opened:
    """Route, write the row and hold its most possible cost; a worker request is dispatched when this commits.

    Raises ModelNotFound (404), NoCapacity (503) or ledger.InsufficientFunds (402), leaving nothing behind.
    `channel=web` rows are relayed by the caller at once, so they start `running` with their one dispatch.
    `ref` (from core/idempotency.py) names the logical request: the row's key (`request_key`, unless given) and so
    its hold derive from it; a retry cannot hold or charge twice (the database refuses a second row with that key).
    `plan_covered` (plans.services.plan_quota_take): no hold, no charge at the end. `api_key_id`: the key that asked.
    `prompt`: the prompt's size when the caller sized it (image and audio parts: v1/prompt_parts.prompt_size).
    `endpoint`: another /v1 operation (API.md §11 "More endpoints"), whose `body` and `prompt` come parsed whole
    (inference/v1/completions.py, embeddings.py) and whose `max_tokens` is taken as it is (0: no output).
    """
    now = now or timezone.now()
    if candidates is None:
        candidates = routing.route(model=desired_model, now=now, client_id=client_id)
    body, prompt, max_tokens = sized_body(endpoint, desired_model, question_text, max_tokens, body, prompt)
    by_web = channel == InferenceChannel.WEB
    request_key = request_key or new_request_key(ref)
    if ref and InferenceRequest.objects.filter(request_key=request_key).exists():
        # A stream sent again (other charging POSTs replay their stored response before getting here), or a retry
        # that took over the key of a request that crashed after writing its row: never a second hold.
        raise StreamNotReplayable("A request with this Idempotency-Key was already made; it is not sent again.")
    req = InferenceRequest.objects.create(
        client_id=client_id,
        question_text=question_text,
        desired_model=desired_model,
        max_tokens=max_tokens,
        channel=channel,
        endpoint=endpoint,
        batch=batch,
        status=InferenceStatus.RUNNING if by_web else InferenceStatus.QUEUED,
        attempts=1 if by_web else 0,
        claimed_at=now if by_web else None,
        held_amount=metering.max_cost(prompt=prompt, max_tokens=max_tokens, candidates=candidates),
        request_key=request_key,
        deadline_at=_deadline(now),
        plan_covered=plan_covered,
        api_key_id=api_key_id,
    )
    _hold(req)
    if not by_web:
        _dispatch_on_commit(req.pk)
    return Opened(request=req, candidates=candidates, body=body, prompt=prompt)


@transaction.atomic
def inference_batch_create(
    *,
    client: Client,
    model: str,
    prompts: list[str],
    max_tokens: int | None,
    ref: str | None = None,
    covered: int = 0,
    api_key_id: int | None = None,
) -> InferenceBatch:
    """One request (one hold) per prompt, all or none; workers run them in parallel. The first `covered` are
    plan-covered (no hold). Each row records `api_key_id`, the key that asked."""
    now = timezone.now()
    candidates = routing.route(model=model, now=now, client_id=client.pk)
    max_tokens = max_tokens or settings.INFERENCE_DEFAULT_MAX_TOKENS
    batch = InferenceBatch.objects.create(client=client, model=model, max_tokens=max_tokens)
    ref = ref or uuid.uuid4().hex
    for i, prompt in enumerate(prompts):
        inference_open(
            client_id=client.pk,
            desired_model=model,
            question_text=prompt,
            max_tokens=max_tokens,
            batch=batch,
            candidates=candidates,
            ref=f"{ref}:{i}",
            now=now,
            plan_covered=i < covered,
            api_key_id=api_key_id,
        )
    return batch


@transaction.atomic
def inference_update(*, req: InferenceRequest, **changes: object) -> InferenceRequest:
    """Change a request still waiting for a worker; its hold is replaced to match. Otherwise 409."""
    locked = InferenceRequest.objects.select_for_update().select_related("client").get(pk=req.pk)
    if locked.status != InferenceStatus.QUEUED:
        raise InferenceNotEditable("Only a queued request can be changed.")
    for name, value in changes.items():
        setattr(locked, name, value)
    candidates = routing.route(model=locked.desired_model, client_id=locked.client_id)
    body = chat_body(model=locked.desired_model, question_text=locked.question_text, max_tokens=locked.max_tokens)
    _release(locked)
    locked.held_amount = metering.max_cost(
        prompt=PromptSize.of(body), max_tokens=locked.max_tokens, candidates=candidates
    )
    locked.request_key = new_request_key()
    locked.save()
    _hold(locked)
    return locked


@transaction.atomic
def inference_delete(*, req: InferenceRequest) -> None:
    """Delete a finished record (its ledger entries stay) or cancel a queued one (its hold released); 409 if running."""
    locked = InferenceRequest.objects.select_for_update().filter(pk=req.pk).first()
    if locked is None:
        raise NotFound("No inference with this id.")
    if locked.status == InferenceStatus.RUNNING:
        raise InferenceRunning("The request is running; delete it once it has finished.")
    if locked.status == InferenceStatus.QUEUED:
        _release(locked)
    locked.delete()


def _billable(delivery: Delivery, usage: metering.Usage) -> tuple[int, int]:
    """Tokens to charge: a node that died mid-stream is paid only for the output it delivered, not the prompt."""
    if delivery.error is not None and delivery.error.node_fault:
        return 0, usage.completion_tokens
    return usage.prompt_tokens, usage.completion_tokens


def outcome(*, delivery: Delivery, prompt: PromptSize, max_tokens: int, held_amount: Decimal, now: datetime) -> dict:
    """The fields a finished request's row gets from what was relayed, `cost` included (never above the hold)."""
    candidate = delivery.candidate
    fields: dict = {"finished_at": now, "updated_at": now}
    cost = Decimal("0")
    if delivery.started and candidate is not None:
        usage = metering.meter(delivery, prompt=prompt, max_tokens=max_tokens)
        billed_prompt, billed_completion = _billable(delivery, usage)
        cost = metering.price(
            prompt_tokens=billed_prompt,
            completion_tokens=billed_completion,
            input_per_million=candidate.input_price_per_million,
            output_per_million=candidate.output_price_per_million,
        )
        cost = min(cost, held_amount)
        fields.update(
            node_id=candidate.node_id,
            answer_text=delivery.answer_text,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            usage_estimated=usage.estimated,
            input_price_per_million=candidate.input_price_per_million,
            output_price_per_million=candidate.output_price_per_million,
            latency_ms=delivery.latency_ms,
        )
    elif candidate is not None:
        fields["node_id"] = candidate.node_id
    if delivery.ok:
        fields.update(status=InferenceStatus.COMPLETED, error_code="", error_detail="")
    else:
        if delivery.client_gone:
            code, detail = "client_disconnected", "The client went away; what was delivered is charged."
        elif delivery.error is not None:
            code, detail = delivery.error.code, delivery.error.detail
        else:
            code, detail = "no_answer", "No node answered."
        fields.update(status=InferenceStatus.FAILED, error_code=code, error_detail=detail[:500])
    fields["cost"] = cost
    return fields


def outcome_count(*, model: str, fields: dict) -> None:
    """Count a finished request in the metrics (once, where its outcome is recorded: here or the lean path)."""
    metrics.observe_inference(
        model=model,
        outcome=fields["status"],
        prompt_tokens=fields.get("prompt_tokens", 0),
        completion_tokens=fields.get("completion_tokens", 0),
    )


def inference_finish(
    *, req: InferenceRequest, attempt: int, delivery: Delivery, prompt: PromptSize, now: datetime | None = None
) -> InferenceRequest | None:
    """Record the outcome, settle (or release) the hold, and tell routing how the nodes did.

    Returns the updated row, or None if this dispatch no longer owns it (the sweeper re-queued or failed it).
    """
    now = now or timezone.now()
    candidate = delivery.candidate
    fields = outcome(delivery=delivery, prompt=prompt, max_tokens=req.max_tokens, held_amount=req.held_amount, now=now)
    cost = fields["cost"]
    if candidate is not None and candidate.model is not None:  # a fallback model (`models`) answered: its record
        fields["desired_model"] = candidate.model
    with transaction.atomic():
        owned = InferenceRequest.objects.filter(pk=req.pk, status=InferenceStatus.RUNNING, attempts=attempt).update(
            **fields
        )
        if not owned:
            return None
        if cost > 0 and candidate is not None and req.plan_covered:  # the platform pays the node and the treasury
            plan_usage_pay(
                operator_id=candidate.owner_id,
                cost=cost,
                key=req.ledger_hold_key,
                ref=ledger_ref(req.pk),
                memo=f"inference #{req.pk} covered by plan",
            )
        elif cost > 0 and candidate is not None:  # a cost means a node answered
            ledger.hold_settle(
                key=req.ledger_hold_key,
                charge=cost,
                operator_id=candidate.owner_id,
                kind=LedgerEntryKind.INFERENCE,
                ref=ledger_ref(req.pk),
                memo=f"inference #{req.pk}",
            )
        else:
            _release(req)
    outcome_count(model=fields.get("desired_model", req.desired_model), fields=fields)
    routing_lessons.teach_now(routing_lessons.lessons(delivery))
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def _fail_unstarted(*, req: InferenceRequest, attempt: int, code: str, detail: str) -> None:
    with transaction.atomic():
        owned = InferenceRequest.objects.filter(pk=req.pk, status=InferenceStatus.RUNNING, attempts=attempt).update(
            status=InferenceStatus.FAILED, error_code=code, error_detail=detail[:500], finished_at=timezone.now()
        )
        if owned:
            _release(req)
    if owned:
        outcome_count(model=req.desired_model, fields={"status": InferenceStatus.FAILED})


def inference_run(*, request_id: int, now: datetime | None = None) -> None:
    """The worker path: claim a queued request (a duplicate delivery claims nothing), relay it, finish it."""
    now = now or timezone.now()
    claimed = InferenceRequest.objects.filter(pk=request_id, status=InferenceStatus.QUEUED).update(
        status=InferenceStatus.RUNNING, claimed_at=now, attempts=F("attempts") + 1, deadline_at=_deadline(now)
    )
    if not claimed:
        return
    req = InferenceRequest.objects.get(pk=request_id)
    try:
        candidates = routing.route(model=req.desired_model, client_id=req.client_id)
    except (ModelNotFound, NoCapacity) as exc:
        _fail_unstarted(req=req, attempt=req.attempts, code=exc.code, detail=exc.detail)
        return
    body = chat_body(model=req.desired_model, question_text=req.question_text, max_tokens=req.max_tokens)
    delivery = Delivery()
    asyncio.run(relay.collect(candidates=candidates, body=body, delivery=delivery))
    inference_finish(req=req, attempt=req.attempts, delivery=delivery, prompt=PromptSize.of(body))


def inference_requeue_stuck(*, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Re-queue requests past their deadline (a lost task, a killed worker); fail them for good, releasing the hold,
    after INFERENCE_MAX_DISPATCHES claims. Rows relayed by a web process are failed at once: nobody waits for a
    retry. Each change is a conditional UPDATE, so a dispatch finishing at the same moment wins or loses cleanly."""
    now = now or timezone.now()
    deadline = timedelta(seconds=settings.INFERENCE_DEADLINE_S)
    counts = {"requeued": 0, "failed": 0}
    stuck = InferenceRequest.objects.filter(status__in=UNFINISHED, deadline_at__lt=now).order_by("deadline_at")
    for req in stuck[:limit]:
        give_up = (
            req.channel == InferenceChannel.WEB
            or req.attempts >= settings.INFERENCE_MAX_DISPATCHES
            or req.created_at < now - deadline * (settings.INFERENCE_MAX_DISPATCHES + 1)
        )
        same = InferenceRequest.objects.filter(pk=req.pk, status=req.status, attempts=req.attempts)
        with transaction.atomic():
            if give_up:
                if same.update(
                    status=InferenceStatus.FAILED,
                    error_code="deadline_exceeded",
                    error_detail="The request did not finish in time.",
                    finished_at=now,
                ):
                    _release(req)
                    counts["failed"] += 1
            elif same.update(status=InferenceStatus.QUEUED, deadline_at=now + deadline):
                _dispatch_on_commit(req.pk)
                counts["requeued"] += 1
    return counts
