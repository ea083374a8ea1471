"""Where inference's doors meet an API key's limits (clients/key_limits.py): who asked, and what it spent.

Each door admits a request with `key_limits.key_admit` before it opens it, ties the row to the key that asked
(`request_attach_key`, for budgets and usage roll-ups), and reports the finished request's cost and tokens
(`request_record_spend`): at once where the web process relays it (/v1, seed stream), from the worker task for
queued ones (seed sync and batch).
"""

from collections.abc import Mapping
from typing import Any

from rest_framework.request import Request

from clients.key_limits import KeyLimits, key_record_spend
from clients.models import ApiKey
from inference.choices import InferenceStatus
from inference.models import InferenceRequest


def calling_key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


def limits_of(request: Request) -> KeyLimits | None:
    """The calling key's limits (None: a session or a keyless payer)."""
    key = calling_key(request)
    return None if key is None else KeyLimits.of(key)


def request_attach_key(*, request_ids: list[int], key: ApiKey | None) -> None:
    """Record which key asked (call in the transaction that opened the rows, before a worker can finish them)."""
    if key is not None and request_ids:
        InferenceRequest.objects.filter(pk__in=request_ids).update(api_key=key)


def request_record_spend(*, req: InferenceRequest, limits: KeyLimits | None) -> None:
    """A finished request: its cost to the key's budget period, its tokens to the key's tpm window."""
    key_record_spend(limits=limits, cost=req.cost, tokens=req.prompt_tokens + req.completion_tokens)


def request_record_spend_by_id(*, request_id: int, was: Mapping[str, Any]) -> None:
    """The worker's side: record a request this dispatch finished (`was`: its status before the dispatch ran)."""
    req = InferenceRequest.objects.filter(pk=request_id, api_key__isnull=False).first()
    if req is None or req.api_key_id is None or not req.is_finished or was.get("status") != InferenceStatus.QUEUED:
        return
    request_record_spend(req=req, limits=KeyLimits.load(req.api_key_id))
