"""x402 (seed 000): keyless, per-request payment of `POST /v1/chat/completions` in USDC (docs/API.md §15).

With `X402_PAY_TO` set, a request without `Authorization` is a door (inference/v1/keyless.py) into the ordinary
/v1 path:
  - no `X-PAYMENT` header: 402 with the payment requirements, `maxAmountRequired` covering the request's hold;
  - `X-PAYMENT` (base64 JSON): checked here (shape, network, payee, amount), then verified by the facilitator
    (`POST {X402_FACILITATOR_URL}/verify`); invalid: 402 with the reason, and no node is called;
  - valid: the payment is credited to the payer address's account (ledger kind x402), the request is served from
    that account like any client's (held, charged 70/25/5), then settled (`POST .../settle`), and the answer
    carries `X-PAYMENT-RESPONSE` (base64 JSON of the settlement). What the request did not spend stays as the
    address's credit: when that credit alone covers a later request's hold, the later payment is verified (which
    proves the address) but not settled, and the credit pays.
  - a stream is settled before it starts (its headers carry the settlement): a failed settlement serves nothing.
A failed settlement of a served (non-stream) request takes the unspent credit back and answers 402, as the x402
reference servers do. Each authorization nonce is accepted once.
"""

import base64
import binascii
import json
import logging
import re
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.http.response import HttpResponseBase
from rest_framework.response import Response

from clients import ledger
from core.errors import DomainError
from inference.v1.keyless import KeylessCall
from payments import services
from payments.models import X402Payment

log = logging.getLogger(__name__)

VERSION = 1
SCHEME = "exact"
USDC = Decimal(10) ** 6  # atomic units per USD (USDC has 6 decimals, like the ledger)
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
NONCE = re.compile(r"^0x[0-9a-fA-F]{1,78}$")
MAX_HEADER = 8192
# The EIP-712 domain of USDC on the networks x402 names (the `extra` a payer signs with).
EIP712 = {"base": {"name": "USD Coin", "version": "2"}, "base-sepolia": {"name": "USDC", "version": "2"}}


class FacilitatorUnavailable(DomainError):
    status, code = 502, "facilitator_unavailable"


def enabled() -> bool:
    return bool(settings.X402_PAY_TO)


def requirements(call: KeylessCall) -> dict[str, Any]:
    """What this request must pay (x402 `PaymentRequirements`), in atomic USDC units covering its hold."""
    units = max(int((call.quote() * USDC).to_integral_value()), 1)
    return {
        "scheme": SCHEME,
        "network": settings.X402_NETWORK,
        "maxAmountRequired": str(units),
        "resource": call.request.build_absolute_uri(),
        "description": f"Chat completion with {call.body['model']} (up to {call.body['max_tokens']} tokens)",
        "mimeType": "text/event-stream" if call.stream else "application/json",
        "payTo": settings.X402_PAY_TO,
        "maxTimeoutSeconds": settings.X402_MAX_TIMEOUT_S,
        "asset": settings.X402_ASSET,
        "extra": EIP712.get(settings.X402_NETWORK, EIP712["base-sepolia"]),
    }


def _payment_required(required: dict[str, Any], error: str) -> Response:
    return Response({"x402Version": VERSION, "error": error, "accepts": [required]}, status=402)


class _Refused(Exception):
    """The X-PAYMENT cannot pay this request: answered 402 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode(header: str, required: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payment payload and its authorization, checked against the requirements; _Refused if unfit."""
    if len(header) > MAX_HEADER:
        raise _Refused("invalid_payment: the X-PAYMENT header is too long")
    try:
        payment = json.loads(base64.b64decode(header.strip(), validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise _Refused("invalid_payment: X-PAYMENT is not base64-encoded JSON") from None
    if not isinstance(payment, dict):
        raise _Refused("invalid_payment: X-PAYMENT must be a JSON object")
    if payment.get("x402Version") != VERSION:
        raise _Refused(f"invalid_x402_version: only x402Version {VERSION} is accepted")
    if payment.get("scheme") != SCHEME or payment.get("network") != required["network"]:
        raise _Refused(f"invalid_scheme: pay with scheme {SCHEME!r} on network {required['network']!r}")
    auth = (payment.get("payload") or {}).get("authorization") if isinstance(payment.get("payload"), dict) else None
    if not isinstance(auth, dict):
        raise _Refused("invalid_payment: payload.authorization is missing")
    payer, pay_to, value, nonce = auth.get("from"), auth.get("to"), auth.get("value"), auth.get("nonce")
    if not (isinstance(payer, str) and ADDRESS.match(payer)) or not (isinstance(pay_to, str) and ADDRESS.match(pay_to)):
        raise _Refused("invalid_payment: authorization.from and .to must be addresses")
    if not (isinstance(nonce, str) and NONCE.match(nonce)):
        raise _Refused("invalid_payment: authorization.nonce must be a 0x hex string")
    if not (isinstance(value, str) and value.isdigit() and len(value) <= 30):
        raise _Refused("invalid_payment: authorization.value must be a decimal string of atomic units")
    if pay_to.lower() != str(required["payTo"]).lower():
        raise _Refused("invalid_exact_evm_payload_recipient_mismatch: pay to " + required["payTo"])
    if int(value) < int(required["maxAmountRequired"]):
        raise _Refused(f"insufficient_funds: this request needs {required['maxAmountRequired']} atomic units")
    return payment, auth


def _facilitator(action: str, payment: dict[str, Any], required: dict[str, Any]) -> dict[str, Any]:
    url = f"{settings.X402_FACILITATOR_URL.rstrip('/')}/{action}"
    body = {"x402Version": VERSION, "paymentPayload": payment, "paymentRequirements": required}
    try:
        response = httpx.post(url, json=body, timeout=settings.X402_FACILITATOR_TIMEOUT_S)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise FacilitatorUnavailable(f"The x402 facilitator could not {action} the payment: {exc}") from exc
    if response.status_code >= 500 or not isinstance(answer, dict):
        raise FacilitatorUnavailable(f"The x402 facilitator could not {action} the payment ({response.status_code}).")
    return answer


def _encoded(settlement: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(settlement, separators=(",", ":")).encode()).decode()


def serve_keyless(call: KeylessCall) -> HttpResponseBase:
    """The x402 door: 402 with requirements, or a verified payment's request served, settled and answered."""
    required = requirements(call)  # 404 / 503 for a model nobody serves, before any payment
    header = call.request.headers.get("X-PAYMENT")
    if not header:
        return _payment_required(required, "X-PAYMENT header is required")
    try:
        payment, auth = _decode(header, required)
    except _Refused as refused:
        return _payment_required(required, refused.reason)
    verdict = _facilitator("verify", payment, required)
    if verdict.get("isValid") is not True:
        return _payment_required(required, str(verdict.get("invalidReason") or "invalid_payment")[:255])
    address = str(verdict.get("payer") or auth["from"])
    if not ADDRESS.match(address) or address.lower() != auth["from"].lower():
        return _payment_required(required, "invalid_payment: the facilitator named another payer")
    payer = services.x402_payer_get_or_create(address=address)
    amount = Decimal(int(auth["value"])) / USDC
    # The address's credit pays first: enough of it, and this payment is only proof of the address.
    from_credit = ledger.balance_of(client_id=payer.client_id) >= Decimal(required["maxAmountRequired"]) / USDC
    try:
        record = services.x402_payment_record(
            payer=payer, network=required["network"], nonce=auth["nonce"].lower(), amount=amount, credit=not from_credit
        )
    except services.NonceUsed:
        return _payment_required(required, "invalid_payment: this authorization was used already")
    if from_credit:
        response = call.serve(payer.client)
        from_credit_settlement = {"success": True, "transaction": "", "network": required["network"]}
        response["X-PAYMENT-RESPONSE"] = _encoded(
            {**from_credit_settlement, "payer": payer.address, "paidFromCredit": True}
        )
        return response
    settlement: dict[str, Any] | None
    if call.stream:
        settlement = _settle(record, payment, required)
        if settlement is None:
            return _payment_required(required, "settlement_failed")
        response = call.serve(payer.client)
    else:
        try:
            response = call.serve(payer.client)
        except Exception:  # nothing was answered (no capacity, ...): the payment is not taken
            services.x402_payment_failed(payment=record, reason="the request was not served")
            raise
        settlement = _settle(record, payment, required)
        if settlement is None:
            return _payment_required(required, "settlement_failed")
    response["X-PAYMENT-RESPONSE"] = _encoded(settlement)
    return response


def _settle(record: X402Payment, payment: dict[str, Any], required: dict[str, Any]) -> dict[str, Any] | None:
    """Settle through the facilitator; on failure take the unspent credit back and return None."""
    try:
        settlement = _facilitator("settle", payment, required)
    except FacilitatorUnavailable as exc:
        settlement = {"success": False, "errorReason": exc.detail}
    if settlement.get("success") is not True:
        reason = str(settlement.get("errorReason") or "settlement failed")
        log.warning("x402 payment %s was not settled: %s", record.pk, reason)
        services.x402_payment_failed(payment=record, reason=reason)
        return None
    services.x402_payment_settled(payment=record, transaction_hash=str(settlement.get("transaction") or ""))
    return {
        "success": True,
        "transaction": settlement.get("transaction", ""),
        "network": settlement.get("network", required["network"]),
        "payer": settlement.get("payer", record.payer.address),
    }
