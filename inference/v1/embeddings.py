"""`POST /v1/embeddings` as an operation of the one /v1 pipeline (API.md §11 "More endpoints"): its request check
and its input's size. The node answers one JSON object (relay.relay_once); billed are its input tokens at the
node's input price, capped as a chat prompt's are, and no output."""

from typing import Any

from inference.choices import InferenceEndpoint
from inference.errors import BadChatRequest
from inference.metering import PromptSize
from inference.v1.protocol import ChatRequest, Endpoint, model_field

MAX_INPUTS = 2048  # OpenAI's limit of inputs in one request
MAX_INPUT_TOKENS = 1_000_000  # one token array's length
ENCODINGS = ("float", "base64")


def _inputs(value: object) -> list[str | list[int]]:
    """`input` as a list of inputs: one string or token array, or a list of them (OpenAI's four forms)."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(_is_token(t) for t in value)):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        items = []
    if not 1 <= len(items) <= MAX_INPUTS or not all(_is_input(item) for item in items):
        raise BadChatRequest(
            f"`input` must be a non-empty string or token array, or a list of 1 to {MAX_INPUTS} of them.",
            attr="input",
        )
    return items


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_input(item: object) -> bool:
    if isinstance(item, str):
        return bool(item)
    return isinstance(item, list) and 1 <= len(item) <= MAX_INPUT_TOKENS and all(_is_token(t) for t in item)


def prompt_size(body: dict) -> PromptSize:
    """Texts by their characters; token arrays counted as their tokens (4 characters and 1 byte each); each input
    a "message" (the allowance a server may add around it)."""
    items = _inputs(body.get("input"))
    text = "".join(item for item in items if isinstance(item, str))
    tokens = sum(len(item) for item in items if isinstance(item, list))
    return PromptSize(chars=len(text) + 4 * tokens, bytes=len(text.encode()) + tokens, messages=len(items))


def question_of(body: dict) -> str:
    items = _inputs(body.get("input"))
    first = items[0] if isinstance(items[0], str) else f"[{len(items[0])} tokens]"
    return (first if len(items) == 1 else f"{first} (+{len(items) - 1} more inputs)")[:100_000]


EMBEDDINGS = Endpoint(
    name=InferenceEndpoint.EMBEDDINGS,
    path="/embeddings",
    chunk_object="list",
    prompt_of=prompt_size,
    question_of=question_of,
    assemble=None,  # one JSON answer
    usage_keys=("prompt_tokens", "total_tokens", "cost", "is_byok", "prompt_tokens_details", "cost_details"),
)


def parse_embeddings_request(data: object) -> ChatRequest:
    """Check an OpenAI embeddings request (BadChatRequest, a 400 naming the parameter, if it is not one)."""
    if not isinstance(data, dict):
        raise BadChatRequest("The body must be a JSON object.")
    model = model_field(data)
    _inputs(data.get("input"))
    encoding = data.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise BadChatRequest("`encoding_format` must be `float` or `base64`.", attr="encoding_format")
    dimensions = data.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise BadChatRequest("`dimensions` must be a positive integer.", attr="dimensions")
    if data.get("stream"):
        raise BadChatRequest("Embeddings are not streamed.", attr="stream")
    body = {"model": model, "input": data["input"]}
    body.update({key: data[key] for key in ("encoding_format", "dimensions", "user") if data.get(key) is not None})
    return ChatRequest(body=body, stream=False, include_usage=False, endpoint=EMBEDDINGS)
