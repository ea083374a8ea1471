"""Where inference's doors meet an API key's limits (clients/key_limits.py) and the client's plan (plans/).

Each door admits a request with `admit` before it opens it (the key's limits, then the plan's daily quota; a batch:
`batch_covered`, in its transaction), opens plan-covered ones as such (`inference_open(plan_covered=...)`: no hold,
and at the end no charge: the platform pays the node and the treasury, plans/covered.py) and with the key that asked
(`inference_open(api_key_id=...)`, in the row's INSERT), and reports each finished request (`request_finished`):
its cost (none when the plan covered it) and tokens to the key. At once where the web process relays it (/v1, seed
stream), from the worker task for queued ones (seed sync and batch).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rest_framework.request import Request

from clients.key_limit_types import key_limits_of
from clients.key_limits import KeyLimits, key_admit, key_record_spend
from clients.models import ApiKey, Client
from inference.choices import InferenceStatus
from inference.models import InferenceRequest
from plans.choices import Coverage
from plans.services import plan_quota_take, plan_quota_take_many


def calling_key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


def calling_key_id(request: Request) -> int | None:
    key = calling_key(request)
    return None if key is None else key.pk


@dataclass(frozen=True)
class Admitted:
    headers: dict[str, str]
    covered: bool  # within the plan's daily quota


def admit(request: Request, *, model: str, client: Client) -> Admitted:
    """The key's limits (403/402/429), then the plan's quota (429 daily_quota_exceeded beyond a `block` plan)."""
    admission = key_admit(limits=key_limits_of(request), model=model)
    coverage = plan_quota_take(client_id=client.pk, model=model)
    return Admitted(headers=admission.headers, covered=coverage == Coverage.COVERED)


def batch_covered(*, client: Client, model: str, count: int) -> int:
    """How many of a batch's `count` requests (the first ones) the client's plan covers today; 429 beyond a `block`
    plan's quota. Call it in the transaction that opens the batch, so a refused batch takes no quota."""
    return plan_quota_take_many(client_id=client.pk, model=model, count=count)


def request_finished(*, req: InferenceRequest, limits: KeyLimits | None) -> None:
    """A finished request: its cost to the key's budget period (a covered one cost the client nothing), its tokens
    to the key's tpm window."""
    cost = Decimal("0") if req.plan_covered else req.cost
    key_record_spend(limits=limits, cost=cost, tokens=req.prompt_tokens + req.completion_tokens)


def request_finished_by_id(*, request_id: int, was: Mapping[str, Any]) -> None:
    """The worker's side: record a request this dispatch finished (`was`: its status before the dispatch ran)."""
    req = InferenceRequest.objects.filter(pk=request_id).first()
    if req is None or not req.is_finished or was.get("status") != InferenceStatus.QUEUED:
        return
    if req.api_key_id is not None or req.plan_covered:
        limits = KeyLimits.load(req.api_key_id) if req.api_key_id is not None else None
        request_finished(req=req, limits=limits)
