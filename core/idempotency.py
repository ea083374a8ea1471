"""`Idempotency-Key` for POSTs that create or charge (API.md §0, §9): a retry gets the first response, not a 2nd charge.

A view hands its work to `with_idempotency` as a function of `ref`, a string stable for the logical request:

    def post(self, request: Request) -> Response:
        def charge(ref: str) -> Response:
            data = ThingIn(data=request.data)
            data.is_valid(raise_exception=True)
            thing = services.thing_create(client=request.user.client, ledger_key=f"thing:{ref}", **data.validated_data)
            return Response(ThingOut(thing).data, status=201)

        return with_idempotency(request, charge)

- The first request with a key claims a record unique per (user, key, method, path) and runs the handler; a 2xx
  response is stored and every retry with the same body gets it back (with `Idempotent-Replayed: true`) without the
  handler running again.
- The same key with another body (or query string) is a 422 `idempotency_key_reused`; a retry while the first is
  still running is a 409 `idempotency_key_in_use` (two concurrent retries never both run).
- A request that fails (an exception, or a response that is not 2xx) stores nothing: its retry runs afresh. Services
  are atomic, so a failure moved no money.
- `ref` is `idem:<record id>` under a key, and stays the same if a crashed attempt's key is taken over after
  IN_PROGRESS_TIMEOUT; handlers build their ledger keys from it, so even such a re-run cannot post twice. Without the
  header (or for an anonymous caller) `ref` is random and the handler simply runs.
- Records are kept KEY_TTL (a day), then pruned; after that a key may be used again for a new request.

Put secrets (a just-issued API key) in responses behind this only if storing them in the database is acceptable.
"""

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidIdempotencyKey
from core.models import IdempotencyRecord
from core.openapi import error_response

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[!-~]{1,255}$"  # 1 to 255 visible ASCII characters (a UUID is typical)
KEY_TTL = timedelta(hours=24)
IN_PROGRESS_TIMEOUT = timedelta(minutes=5)  # longer than any request may run
_REF_PREFIX = "idem:"


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type={"type": "string", "pattern": KEY_PATTERN},
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key with the same body returns the first response and changes nothing again; "
        "the same key with another body is a 422. Keys are kept for 24 hours."
    ),
)
IDEMPOTENCY_RESPONSES = {422: error_response(422)}


def with_idempotency(request: Request, handler: Callable[[str], Response]) -> Response:
    """Run `handler(ref)` once per Idempotency-Key; retries with the same body get its stored 2xx response."""
    raw = request.headers.get(HEADER)
    if raw is None or not request.user.is_authenticated:
        return handler(f"once:{uuid.uuid4().hex}")
    if not re.fullmatch(KEY_PATTERN, raw):
        raise InvalidIdempotencyKey(f"The {HEADER} header must be 1 to 255 visible ASCII characters.")
    claimed = _claim(request, key=raw, fingerprint=_fingerprint(request))
    if isinstance(claimed, Response):
        return claimed
    try:
        response = handler(f"{_REF_PREFIX}{claimed.pk}")
    except BaseException:
        _forget(claimed)
        raise
    if not status.is_success(response.status_code):
        _forget(claimed)
        return response
    IdempotencyRecord.objects.filter(pk=claimed.pk).update(
        response_status=response.status_code, response_body=response.data, completed_at=timezone.now()
    )
    return response


def idempotency_answer_replace(*, ref: str, status_code: int, body: Any) -> None:
    """Store a later, final answer for the request run under `ref`, replacing the 2xx its handler gave (the seed
    resource's 202, then 201 once its wait in front of Django ends: inference/seed_asgi.py). Replays get it from
    now on. A `ref` without a key (`once:...`) has nothing stored."""
    if not ref.startswith(_REF_PREFIX):
        return
    IdempotencyRecord.objects.filter(pk=int(ref.removeprefix(_REF_PREFIX)), response_status__isnull=False).update(
        response_status=status_code, response_body=body, completed_at=timezone.now()
    )


def _fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    query = request.META.get("QUERY_STRING", "")
    return hashlib.sha256(f"{query}\n{body}".encode()).hexdigest()


def _claim(request: Request, *, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    """The record this request may run under, or the stored response to replay; raises on reuse or a running twin."""
    now = timezone.now()
    scope = {"user": request.user, "key": key, "method": request.method, "path": request.path[:1024]}
    with transaction.atomic():
        # An expired key starts over as a new record (a new `ref`), never as a retry of the old request.
        IdempotencyRecord.objects.filter(**scope, created_at__lt=now - KEY_TTL).delete()
        record = IdempotencyRecord.objects.select_for_update().filter(**scope).first()
        if record is None:
            try:
                with transaction.atomic():
                    return IdempotencyRecord.objects.create(**scope, fingerprint=fingerprint, started_at=now)
            except IntegrityError as exc:  # a concurrent twin inserted it first and is running now
                raise IdempotencyKeyInUse(f"A request with this {HEADER} is in progress; retry later.") from exc
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(f"This {HEADER} was already used for a request with another body.")
        if record.response_status is not None:
            return Response(record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"})
        if record.started_at > now - IN_PROGRESS_TIMEOUT:
            raise IdempotencyKeyInUse(f"A request with this {HEADER} is in progress; retry later.")
        # Its first attempt died without an answer: run again under the same record, hence the same `ref`.
        record.started_at = now
        record.save(update_fields=["started_at"])
        return record


def _forget(record: IdempotencyRecord) -> None:
    """Free the key of a request that failed, so its retry runs afresh (unless a later attempt took it over)."""
    if transaction.get_connection().needs_rollback:
        return  # the enclosing transaction rolls back, the record with it
    IdempotencyRecord.objects.filter(pk=record.pk, started_at=record.started_at, response_status=None).delete()


def idempotency_record_prune(*, now: datetime | None = None) -> int:
    """Delete records older than KEY_TTL; returns how many."""
    cutoff = (now or timezone.now()) - KEY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
