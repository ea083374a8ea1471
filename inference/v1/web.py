"""The web door's pipeline: the /v1 pipeline (inference/v1/pipeline.py) with the strategies of requests served
inside Django, each with its row and its own hold. The /v1 view runs it whole; the seed resource's stream
(`POST /api/v1/inference/stream/`) opens its row itself and relays and records through it (`call_of`)."""

from inference.services import Opened
from inference.v1.pipeline import Caller, ChatCall, Pipeline
from inference.v1.protocol import ChatRequest
from inference.v1.record import RowRecord
from inference.v1.reserve import HoldReserve
from inference.v1.routes import LiveRoutes

PIPELINE = Pipeline(routes=LiveRoutes(), reserve=HoldReserve(), record=RowRecord())


def call_of(opened: Opened, caller: Caller) -> ChatCall:
    """A request opened elsewhere (row written, hold placed: services.inference_open) as a call to relay."""
    row = opened.request
    return ChatCall(
        request=ChatRequest(body=opened.body, stream=True, include_usage=False),
        caller=caller,
        key=row.request_key,
        candidates=opened.candidates,
        prompt=opened.prompt,
        need=row.held_amount,
        max_tokens=row.max_tokens,
        row=row,
    )
