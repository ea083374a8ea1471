"""Domain errors of inference (rendered by core/errors.py under /api/, and in OpenAI's shape under /v1/)."""

from core.errors import DomainError


class ModelNotFound(DomainError):
    status, code = 404, "model_not_found"


class NoCapacity(DomainError):
    """A known model with no live node able to take the request now; `retry_after` seconds is a fair wait."""

    status, code = 503, "no_capacity"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InferenceNotEditable(DomainError):
    status, code = 409, "inference_not_editable"


class InferenceRunning(DomainError):
    status, code = 409, "inference_running"


class StreamNotReplayable(DomainError):
    """A stream sent again with the Idempotency-Key of an earlier stream: it cannot be replayed, nor charged twice."""

    status, code = 409, "stream_not_replayable"


class BadChatRequest(DomainError):
    code = "invalid_request"


class UpstreamRejected(DomainError):
    code = "upstream_rejected"


class EndpointNotServed(DomainError):
    """Every node tried for the model answered 404/405 for the operation's path (/v1/completions, /v1/embeddings):
    the model is not made for it (API.md §9 "Nodes that serve an endpoint")."""

    status, code = 400, "endpoint_not_served"


class UsageQueryInvalid(DomainError):
    """A `client/usage/` query value that is not a grouping or a date (the field in `attr`)."""

    code = "invalid_usage_query"


class NoNodeWithinPrice(DomainError):
    """`provider.max_price` is below the prices of every node that could otherwise serve the request (API.md §11)."""

    code = "no_node_within_price"


class GenerationQueryInvalid(DomainError):
    """A `generation/` query without a usable `id` (the parameter named in the detail)."""

    code = "invalid_generation_query"
