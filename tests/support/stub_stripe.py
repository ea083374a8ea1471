"""A stand-in for Stripe's API: a real HTTP server on 127.0.0.1 that the official `stripe` library talks to when
`STRIPE_API_BASE` points at it. It serves `POST /v1/checkout/sessions` (form-encoded, as the library sends it) with
a session object shaped like Stripe's, records every request (headers included), and can be told to fail.

Also: `sign(payload, secret)` builds a `Stripe-Signature` header with Stripe's scheme (HMAC-SHA256 of
"<t>.<payload>", `t=...,v1=...`), and `event(...)` a webhook body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.support.stub_server import StubHandler, StubServer


@dataclass
class StripeRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]  # the flattened form fields, as sent: "line_items[0][quantity]" -> "1"


class _Handler(StubHandler):
    owner: StubStripe

    def _send(self, status: int, payload: dict) -> None:
        self.send_json(status, payload, headers={"Request-Id": "req_" + secrets.token_hex(7)})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        with self.owner._lock:
            self.owner.requests.append(StripeRequest("POST", self.path, dict(self.headers.items()), form))
        if not self.headers.get("Authorization", "").startswith("Bearer sk_"):
            self._send(401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})
            return
        if self.owner.fail_with is not None:
            self._send(*self.owner.fail_with)
            return
        if self.path != "/v1/checkout/sessions":
            self._send(404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized URL {self.path}"}})
            return
        self._send(200, self.owner.create_session(form))


class StubStripe(StubServer):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[StripeRequest] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.fail_with: tuple[int, dict] | None = None  # (status, error body) to answer instead

    @property
    def base_url(self) -> str:
        return self.origin

    def create_session(self, form: dict[str, str]) -> dict[str, Any]:
        session_id = "cs_test_" + secrets.token_hex(24)
        now = int(time.time())
        metadata = {k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")}
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": int(form["line_items[0][price_data][unit_amount]"]),
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]) * int(form["line_items[0][quantity]"]),
            "cancel_url": form.get("cancel_url"),
            "client_reference_id": form.get("client_reference_id"),
            "created": now,
            "currency": form["line_items[0][price_data][currency]"],
            "customer": None,
            "customer_email": form.get("customer_email"),
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "metadata": metadata,
            "mode": form["mode"],
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": form.get("success_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}#stub",
        }
        with self._lock:
            self.sessions[session_id] = session
        return session


def sign(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, computed as Stripe does (not with the library under test)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def event(kind: str, session: dict[str, Any], **session_changes: Any) -> str:
    """A webhook body: an `event` object around a (changed) copy of the session, as Stripe sends it."""
    body = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-06-30.basil",
        "created": int(time.time()),
        "data": {"object": {**session, **session_changes}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }
    return json.dumps(body)
