"""The record step's strategies: the outcome written and charged (`call.cost`), counted, and taught to routing.

- `JournalRecord` (lean door): one use entry in the Redis journal before the end of the answer reaches the caller
  (inference/journal/), applied to PostgreSQL by the drain task: the row, and the charge from the lease. Routing
  learns the failures now (in the background) and the latency when the entry is applied.
- `RowRecord` (web door): the row's UPDATE and the settle (or release) of its own hold, at once
  (services.inference_finish, which teaches routing), then the key's spend or the plan's cover (door_limits).
Both price and word the outcome with services.outcome and teach by routing_lessons' one rule.
"""

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from clients.key_limits import key_record_spend_async
from core.asgi import database_call
from inference import door_limits, routing_lessons, services
from inference.journal import entries
from inference.journal.stream import append_or_apply
from inference.v1.pipeline import ChatCall
from inference.v1.protocol import question_of
from inference.v1.sessions import session_remember_async
from llm_models import services as node_services

_record_failure_async = database_call(node_services.node_record_failure)


class JournalRecord:
    def __init__(self, *, forget_route: Callable[[str], None], background: Callable[[Awaitable[Any]], None]) -> None:
        self.forget_route = forget_route  # the door's cached route of a model, dropped when a node of it failed
        self.background = background

    async def record(self, call: ChatCall) -> None:
        delivery = call.delivery
        max_tokens = call.max_tokens
        fields = services.outcome(
            delivery=delivery, prompt=call.prompt, max_tokens=max_tokens, held_amount=call.need, now=timezone.now()
        )
        taught = routing_lessons.lessons(delivery)
        candidate = delivery.candidate
        entry = entries.use_entry(
            key=call.key,
            lease_key=call.reservation.key,
            client_id=call.caller.client_id,
            owner_id=candidate.owner_id if candidate else None,
            model=call.model,
            question_text=question_of(call.request.body),
            max_tokens=max_tokens,
            held=call.need,
            fields=fields,
            created_at=call.began,
            teach_ms=taught.latency[1] if taught.latency else None,
            api_key_id=call.caller.key_id,
        )
        await append_or_apply(entry)
        call.cost = fields["cost"]
        services.outcome_count(model=call.model, fields=fields)
        await remember_session(call)
        if taught.failed:  # this process stops routing to them now; they cool down in the background
            for model in call.request.models:
                self.forget_route(model)
            for node_id in taught.failed:
                self.background(_record_failure_async(node_id=node_id))
        limits = call.caller.limits
        if limits is not None and limits.tpm is not None:  # the minute's tokens now; the cost when applied
            tokens = fields.get("prompt_tokens", 0) + fields.get("completion_tokens", 0)
            self.background(key_record_spend_async(limits=limits, cost=Decimal(0), tokens=tokens))


def _finish_row(call: ChatCall) -> None:
    row = call.row
    finished = services.inference_finish(req=row, attempt=row.attempts, delivery=call.delivery, prompt=call.prompt)
    if finished is not None:
        door_limits.request_finished(req=finished, limits=call.caller.limits)
        call.row = finished
        call.cost = finished.cost


class RowRecord:
    async def record(self, call: ChatCall) -> None:
        # In the request's own thread and connection (its transaction), as the row was opened (reserve.HoldReserve).
        await sync_to_async(_finish_row)(call)
        await remember_session(call)


async def remember_session(call: ChatCall) -> None:
    """A session's request answered: its node is the session's now (v1/sessions.py); one Redis write, only with a
    session."""
    session, delivery = call.request.session, call.delivery
    if session is not None and delivery.candidate is not None and delivery.started and delivery.error is None:
        await session_remember_async(
            client_id=call.caller.client_id, session=session, node_id=delivery.candidate.node_id
        )
