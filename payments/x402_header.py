"""The X-PAYMENT header of an x402 request (docs/API.md §15, §9 "Payments"): decoded and checked field by field.

Whatever a client sends, `decode` either returns a payment whose every field we store or forward is of the right
type, encoding and length, or raises Refused (answered 402 with the reason): nothing malformed reaches the
facilitator, a node or the database. Patterns are matched whole (`fullmatch`: `$` would let a final newline
through) and are ASCII only (`str.isdigit` would take "²").
"""

import base64
import binascii
import json
import re
from typing import Any

VERSION = 1
SCHEME = "exact"
MAX_HEADER = 8192
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")  # X402Payer.address: 42 characters
NONCE = re.compile(r"0x[0-9a-fA-F]{1,78}")  # X402Payment.nonce: at most 80 characters
# A payment's value in atomic USDC units: at most 15 digits (under 10^9 USDC), so value / 10^6 fits
# X402Payment.amount and a balance (20 digits, 6 after the point) with room to spare.
VALUE = re.compile(r"[0-9]{1,15}")
UINT256 = re.compile(r"[0-9]{1,78}")  # validAfter, validBefore: decimal uint256
SIGNATURE = re.compile(r"0x[0-9a-fA-F]{2,8000}")  # 65 bytes for an EOA; longer for a smart wallet (EIP-1271/6492)


class Refused(Exception):
    """The X-PAYMENT cannot pay this request: answered 402 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fits(pattern: re.Pattern[str], value: object) -> bool:
    """A string that the whole of `pattern` matches."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _json_object(header: str) -> dict[str, Any]:
    if len(header) > MAX_HEADER:
        raise Refused("invalid_payment: the X-PAYMENT header is too long")
    try:
        payment = json.loads(base64.b64decode(header.strip(), validate=True))
    except (binascii.Error, ValueError, RecursionError):  # not ASCII, not base64, not UTF-8, not JSON, too deep
        raise Refused("invalid_payment: X-PAYMENT is not base64-encoded JSON") from None
    if not isinstance(payment, dict):
        raise Refused("invalid_payment: X-PAYMENT must be a JSON object")
    return payment


def _authorization(payment: dict[str, Any]) -> dict[str, Any]:
    payload = payment.get("payload")
    if not isinstance(payload, dict) or not isinstance(auth := payload.get("authorization"), dict):
        raise Refused("invalid_payment: payload.authorization is missing")
    if not fits(SIGNATURE, payload.get("signature")):
        raise Refused("invalid_payment: payload.signature must be a 0x hex string")
    if not (fits(ADDRESS, auth.get("from")) and fits(ADDRESS, auth.get("to"))):
        raise Refused("invalid_payment: authorization.from and .to must be addresses")
    if not fits(NONCE, auth.get("nonce")):
        raise Refused("invalid_payment: authorization.nonce must be a 0x hex string of at most 78 digits")
    if not fits(VALUE, auth.get("value")):
        raise Refused(
            "invalid_payment: authorization.value must be a decimal string of atomic units, at most 15 digits"
        )
    if not (fits(UINT256, auth.get("validAfter")) and fits(UINT256, auth.get("validBefore"))):
        raise Refused("invalid_payment: authorization.validAfter and .validBefore must be decimal strings")
    return auth


def decode(header: str, required: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payment payload and its authorization, checked against the requirements; Refused if unfit."""
    payment = _json_object(header)
    version = payment.get("x402Version")
    if type(version) is not int or version != VERSION:  # not True, not 1.0
        raise Refused(f"invalid_x402_version: only x402Version {VERSION} is accepted")
    if payment.get("scheme") != SCHEME or payment.get("network") != required["network"]:
        raise Refused(f"invalid_scheme: pay with scheme {SCHEME!r} on network {required['network']!r}")
    auth = _authorization(payment)
    if auth["to"].lower() != str(required["payTo"]).lower():
        raise Refused("invalid_exact_evm_payload_recipient_mismatch: pay to " + required["payTo"])
    if int(auth["value"]) < int(required["maxAmountRequired"]):
        raise Refused(f"insufficient_funds: this request needs {required['maxAmountRequired']} atomic units")
    return payment, auth
