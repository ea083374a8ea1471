"""`POST /v1/completions`, OpenAI's legacy text completion, as an operation of the one /v1 pipeline
(API.md §11 "More endpoints"): its request check, its prompt's size, and the `text_completion` assembled from the
node's stream for a non-stream request. Everything else (admit, route, reserve, relay, record, teach) is the
pipeline's, as for chat."""

from typing import Any

from django.conf import settings

from inference.choices import InferenceEndpoint
from inference.errors import BadChatRequest
from inference.metering import PromptSize
from inference.v1.params import node_body
from inference.v1.protocol import ChatRequest, Endpoint, int_field, model_field, stream_and_sampling

# Request keys passed through to the node as they are (after the checks below).
MAX_PROMPT_TOKENS = 1_000_000  # a token-array prompt's length


def _single_prompt(prompt: object) -> str | list[int]:
    """The one prompt of `prompt`: a string, a token array, or a list holding one of those. Several prompts in one
    request (OpenAI's batching) are refused: each is its own request here, held and billed on its own."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt:
        return prompt
    if (
        isinstance(prompt, list)
        and 1 <= len(prompt) <= MAX_PROMPT_TOKENS
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    ):
        return prompt
    raise BadChatRequest(
        "`prompt` must be one non-empty string or token array (several prompts: one request each).", attr="prompt"
    )


def prompt_size(body: dict) -> PromptSize:
    """A text prompt by its characters; a token array counted as its tokens (4 characters and 1 byte each)."""
    prompt = body.get("prompt")
    text = prompt if isinstance(prompt, str) else ""
    text += str(body.get("suffix") or "")
    tokens = len(prompt) if isinstance(prompt, list) else 0
    return PromptSize(chars=len(text) + 4 * tokens, bytes=len(text.encode()) + tokens, messages=1)


def question_of(body: dict) -> str:
    prompt = body.get("prompt")
    return (prompt if isinstance(prompt, str) else f"[{len(prompt or [])} prompt tokens]")[:100_000]


class TextCompletion:
    """A `text_completion` assembled from the chunks of its stream (choices by `index`, `text` joined, logprobs'
    lists joined)."""

    def __init__(self) -> None:
        self.head: dict = {}
        self.choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict) -> None:
        if not self.head:
            self.head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            raw = choice.get("index")
            index = raw if isinstance(raw, int) else 0
            slot = self.choices.setdefault(index, {"index": index, "text": "", "logprobs": None, "finish_reason": None})
            if isinstance(choice.get("text"), str):
                slot["text"] += choice["text"]
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                joined = slot["logprobs"] = slot["logprobs"] or {}
                for key, items in logprobs.items():
                    if isinstance(items, list):
                        joined.setdefault(key, []).extend(items)

    def payload(self, *, usage: dict | None) -> dict:
        completion = {**self.head, "object": "text_completion"}
        completion["choices"] = [self.choices[i] for i in sorted(self.choices)]
        if usage is not None:
            completion["usage"] = usage
        return completion


COMPLETIONS = Endpoint(
    name=InferenceEndpoint.COMPLETIONS,
    path="/completions",
    chunk_object="text_completion",
    prompt_of=prompt_size,
    question_of=question_of,
    assemble=TextCompletion,
)


def parse_completion_request(data: object) -> ChatRequest:
    """Check an OpenAI text completion request (BadChatRequest, a 400 naming the parameter, if it is not one)."""
    if not isinstance(data, dict):
        raise BadChatRequest("The body must be a JSON object.")
    model = model_field(data)
    prompt = _single_prompt(data.get("prompt"))
    max_tokens = int_field(data, "max_tokens", low=1, high=settings.INFERENCE_MAX_TOKENS_LIMIT)
    for key in ("n", "best_of"):
        if data.get(key, 1) not in (1, None):
            raise BadChatRequest(f"Only `{key}` = 1 is supported.", attr=key)
    int_field(data, "logprobs", low=0, high=20)
    stream, include_usage = stream_and_sampling(data)
    suffix = data.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise BadChatRequest("`suffix` must be a string.", attr="suffix")
    max_tokens = max_tokens or settings.INFERENCE_DEFAULT_MAX_TOKENS
    # Every other field reaches the node as for chat (v1/params.node_body: the marketplace's own dropped, `user`
    # hashed); the prompt as checked and the completion limit held for (a text completion's default is ours).
    body = {**node_body(data), "model": model, "prompt": prompt, "max_tokens": max_tokens}
    return ChatRequest(
        body=body,
        stream=stream,
        include_usage=include_usage,
        requested_max_tokens=max_tokens,
        endpoint=COMPLETIONS,
    )
