"""A stand-in for an x402 facilitator: a real HTTP server on 127.0.0.1 serving `POST /verify` and `POST /settle`
as the x402 facilitator API does. Tests say whether payments verify and settle, which headers it demands (a hosted
facilitator's API key: 401 without them), whether verify calls wait for each other (a barrier, so that concurrent
payments go on together), and read back what it received (bodies and headers).

Also `payment_header(...)`: an X-PAYMENT header (base64 JSON of an `exact` EVM payment payload).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading

from tests.support.stub_server import StubHandler, StubServer


class _Handler(StubHandler):
    owner: StubFacilitator

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.owner._lock:
            self.owner.received.append((self.path, body))
            self.owner.headers_received.append(dict(self.headers.items()))
        if any(self.headers.get(name) != value for name, value in self.owner.required_headers.items()):
            self.send_json(401, {"error": "unauthorized"})
            return
        if self.path == "/verify" and self.owner.verify_barrier is not None:
            self.owner.verify_barrier.wait(timeout=30)
        payer = body["paymentPayload"]["payload"]["authorization"]["from"]
        if self.path == "/verify":
            if self.owner.valid:
                self.send_json(200, {"isValid": True, "payer": payer})
            else:
                self.send_json(200, {"isValid": False, "invalidReason": self.owner.invalid_reason, "payer": payer})
        elif self.path == "/settle":
            network = body["paymentRequirements"]["network"]
            if self.owner.settles:
                tx = "0x" + secrets.token_hex(32)
                self.send_json(200, {"success": True, "transaction": tx, "network": network, "payer": payer})
            else:
                self.send_json(200, {"success": False, "errorReason": "insufficient_funds", "transaction": "",
                                    "network": network, "payer": payer})  # fmt: skip
        else:
            self.send_json(404, {"error": "not found"})


class StubFacilitator(StubServer):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.valid = True
        self.invalid_reason = "invalid_exact_evm_payload_signature"
        self.settles = True
        self.received: list[tuple[str, dict]] = []  # (path, body)
        self.headers_received: list[dict[str, str]] = []
        self.required_headers: dict[str, str] = {}
        self.verify_barrier: threading.Barrier | None = None

    @property
    def url(self) -> str:
        return self.origin

    def calls(self, path: str) -> list[dict]:
        with self._lock:
            return [body for p, body in self.received if p == path]


def payment_header(
    *, payer: str, pay_to: str, value: str, network: str = "base-sepolia", nonce: str | None = None
) -> str:
    payload = {
        "x402Version": 1,
        "scheme": "exact",
        "network": network,
        "payload": {
            "signature": "0x" + secrets.token_hex(65),
            "authorization": {
                "from": payer,
                "to": pay_to,
                "value": value,
                "validAfter": "0",
                "validBefore": "99999999999",
                "nonce": nonce or "0x" + secrets.token_hex(32),
            },
        },
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()
