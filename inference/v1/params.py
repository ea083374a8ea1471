"""What of an OpenAI chat request reaches the node, and how large a completion its hold covers (API.md §11).

- `node_body(data)`: every field of the request unchanged (`top_k`, `min_p`, `seed`, `reasoning_effort`, vLLM's
  `chat_template_kwargs`, ...), except the marketplace's own (`provider`, `models`, `session_id`: they steer
  routing and mean nothing to a node) and `user`, which reaches the node only as a salted hash (`user_hash`), so a
  node never learns who the caller's end users are yet can still tell them apart. `max_tokens` /
  `max_completion_tokens` are sent only when the caller gave them: omitted, the node uses its own default.
- `hold_max_tokens(...)`: the completion tokens the hold is sized for (and the most billed): what the caller asked
  for, or, omitted, what the context window leaves after the prompt.

Run `v1.protocol.parse_chat_request` first: it checks the fields it knows (their values are forwarded as
given); this module checks `user` and knows nothing else of the body.
"""

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Max

from inference.errors import BadChatRequest
from llm_models.models import LlmModel, NodeModel

# Body fields that are the marketplace's, never the node's (routing controls and sessions).
MARKETPLACE_FIELDS = frozenset({"provider", "models", "session_id"})
COMPLETION_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
MAX_USER_LENGTH = 256
_USER_HASH_PREFIX = "u-"


def _salt() -> bytes:
    salt = settings.INFERENCE_USER_HASH_SALT
    if salt:
        return str(salt).encode()
    # Derived, not SECRET_KEY itself: the hash must not become a way to test guesses of the secret key.
    return hashlib.sha256(b"inference-user-hash:" + settings.SECRET_KEY.encode()).digest()


def user_hash(user: str) -> str:
    """`user` as the node sees it: `u-` and 32 hex digits of an HMAC-SHA256 keyed by the salt (stable per
    deployment, so a node can still tell one end user from another)."""
    return _USER_HASH_PREFIX + hmac.new(_salt(), user.encode(), hashlib.sha256).hexdigest()[:32]


def node_body(data: Mapping[str, object]) -> dict:
    """The body to send to the node (see the module docstring). `data` is the request as the client sent it."""
    body = {key: value for key, value in data.items() if key not in MARKETPLACE_FIELDS}
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str) or len(user) > MAX_USER_LENGTH:
            raise BadChatRequest(f"`user` must be a string of at most {MAX_USER_LENGTH} characters.", attr="user")
        body["user"] = user_hash(user)
    for key in COMPLETION_LIMIT_FIELDS:
        if body.get(key) is None:
            body.pop(key, None)  # null is "not given": the node's default
    return body


def requested_max_tokens(data: Mapping[str, object]) -> int | None:
    """The completion limit the caller gave (`max_completion_tokens`, else `max_tokens`), None if neither (values
    already checked by parse_chat_request)."""
    for key in COMPLETION_LIMIT_FIELDS:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def hold_max_tokens(*, requested: int | None, context_window: int | None, prompt_tokens: int) -> int:
    """The completion tokens to hold money for (and the most billed): `requested` when given; else what the
    context window leaves after the prompt estimate (at least 1); else, the window unknown,
    INFERENCE_MAX_TOKENS_LIMIT (the largest `max_tokens` a caller may ask for)."""
    if requested is not None:
        return requested
    if context_window is None:
        return settings.INFERENCE_MAX_TOKENS_LIMIT
    return max(1, context_window - prompt_tokens)


def context_window(*, model: str, node_ids: Iterable[int]) -> int | None:
    """The largest context window known for `model` on these nodes (their own figures and the model's), None when
    none is known. The largest: the hold must cover whichever of them answers."""
    ids = list(node_ids)
    window = (
        NodeModel.objects.filter(model__name=model, node_id__in=ids, context_window__isnull=False)
        .aggregate(w=Max("context_window"))
        .get("w")
    )
    model_window = LlmModel.objects.filter(name=model).values_list("context_window", flat=True).first()
    known = [w for w in (window, model_window) if w is not None]
    return max(known) if known else None


context_window_async = sync_to_async(context_window)
