"""x402 (seed 000): keyless, per-request payment of `POST /v1/chat/completions` in USDC (docs/API.md §15).

With `X402_PAY_TO` set, a request without `Authorization` is a door (inference/v1/keyless.py) into the ordinary
/v1 path:
  - no `X-PAYMENT` header: 402 with the payment requirements, `maxAmountRequired` covering the request's hold;
  - `X-PAYMENT` (base64 JSON): checked field by field (payments/x402_header.py: shape, network, payee, amount),
    then verified by the facilitator (`POST {X402_FACILITATOR_URL}/verify`, with X402_FACILITATOR_HEADERS);
    invalid: 402 with the reason, and no node is called;
  - valid: the payment is credited to the payer address's account (ledger kind x402), the request is served from
    that account like any client's (held, charged 70/25/5), then settled (`POST .../settle`), and the answer
    carries `X-PAYMENT-RESPONSE` (base64 JSON of the settlement). What the request did not spend stays as the
    address's credit: when that (settled) credit alone covers a later request's hold, the later payment is verified
    (which proves the address) but not settled, and the credit pays. If a concurrent request of the address spent
    the credit first, the hold finds too little before anything is served, and the payment pays after all.
  - a stream is settled before it starts (its headers carry the settlement): a failed settlement serves nothing.
A failed settlement of a served (non-stream) request takes the unspent credit back and answers 402, as the x402
reference servers do. Each authorization nonce is accepted once.
"""

import base64
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.http.response import HttpResponseBase
from rest_framework.response import Response

from clients import ledger
from core.errors import DomainError
from inference.v1.keyless import KeylessCall
from payments import selectors, services
from payments.models import X402Payer, X402Payment
from payments.x402_header import ADDRESS, SCHEME, VERSION, Refused, decode, fits

log = logging.getLogger(__name__)

USDC = Decimal(10) ** 6  # atomic units per USD (USDC has 6 decimals, like the ledger)
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


def _facilitator(action: str, payment: dict[str, Any], required: dict[str, Any]) -> dict[str, Any]:
    """POST to the facilitator (with X402_FACILITATOR_HEADERS, e.g. its API key); FacilitatorUnavailable (502) if it
    cannot be reached, fails, or refuses our credentials (401/403)."""
    url = f"{settings.X402_FACILITATOR_URL.rstrip('/')}/{action}"
    body = {"x402Version": VERSION, "paymentPayload": payment, "paymentRequirements": required}
    headers = settings.X402_FACILITATOR_HEADERS
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=settings.X402_FACILITATOR_TIMEOUT_S)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise FacilitatorUnavailable(f"The x402 facilitator could not {action} the payment: {exc}") from exc
    if response.status_code in (401, 403) or response.status_code >= 500 or not isinstance(answer, dict):
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
        payment, auth = decode(header, required)
    except Refused as refused:
        return _payment_required(required, refused.reason)
    verdict = _facilitator("verify", payment, required)
    if verdict.get("isValid") is not True:
        return _payment_required(required, str(verdict.get("invalidReason") or "invalid_payment")[:255])
    address = verdict.get("payer") or auth["from"]
    if not fits(ADDRESS, address) or address.lower() != auth["from"].lower():
        return _payment_required(required, "invalid_payment: the facilitator named another payer")
    payer = services.x402_payer_get_or_create(address=address)
    # The address's (settled) credit pays first: enough of it, and this payment is only proof of the address.
    from_credit = selectors.x402_credit_of(payer=payer) >= Decimal(required["maxAmountRequired"]) / USDC
    try:
        record = services.x402_payment_record(
            payer=payer,
            network=required["network"],
            nonce=auth["nonce"].lower(),
            amount=Decimal(int(auth["value"])) / USDC,
            credit=not from_credit,
        )
    except services.NonceUsed:
        return _payment_required(required, "invalid_payment: this authorization was used already")
    if from_credit:
        try:
            return _serve_from_credit(call, payer, required)
        except ledger.InsufficientFunds:  # a concurrent request of the address spent the credit first: nothing
            services.x402_payment_credit(payment=record)  # was served, and this payment pays after all
    return _serve_paid(call, record, payment, required)


def _serve_from_credit(call: KeylessCall, payer: X402Payer, required: dict[str, Any]) -> HttpResponseBase:
    response = call.serve(payer.client)
    settlement = {"success": True, "transaction": "", "network": required["network"], "payer": payer.address}
    response["X-PAYMENT-RESPONSE"] = _encoded({**settlement, "paidFromCredit": True})
    return response


SPENT = "insufficient_funds: the address's credit was spent by its concurrent requests; pay again"


def _serve_paid(
    call: KeylessCall, record: X402Payment, payment: dict[str, Any], required: dict[str, Any]
) -> HttpResponseBase:
    """Serve a request from its credited payment and settle it: a stream before it starts, else after."""
    client = record.payer.client
    settlement: dict[str, Any] | None
    if call.stream:
        settlement = _settle(record, payment, required)
        if settlement is None:
            return _payment_required(required, "settlement_failed")
        try:
            response = call.serve(client)
        except ledger.InsufficientFunds:  # settled, but a concurrent request spent it: that request was served
            return _payment_required(required, SPENT)
    else:
        try:
            response = call.serve(client)
        except Exception as exc:  # nothing was answered (no capacity, ...): the payment is not taken
            services.x402_payment_failed(payment=record, reason="the request was not served")
            if isinstance(exc, ledger.InsufficientFunds):
                return _payment_required(required, SPENT)
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
