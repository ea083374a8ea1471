"""The body a request's node gets and what it is sized as, for rows opened by inference.services."""

from django.conf import settings

from inference.choices import InferenceEndpoint
from inference.metering import PromptSize


def chat_body(*, model: str, question_text: str, max_tokens: int) -> dict:
    """The OpenAI chat request for a seed-style question."""
    return {"model": model, "messages": [{"role": "user", "content": question_text}], "max_tokens": max_tokens}


def sized_body(
    endpoint: str,
    model: str,
    question_text: str,
    max_tokens: int | None,
    body: dict | None,
    prompt: PromptSize | None,
) -> tuple[dict, PromptSize, int]:
    """The body, the prompt's size and the completion tokens held for: a chat's body is made from the question when
    not given, with `max_tokens` set (INFERENCE_DEFAULT_MAX_TOKENS unless given) and sized from it unless the
    caller sized it; another operation's parsed body and size are taken whole (`max_tokens` as given, 0: none)."""
    if endpoint != InferenceEndpoint.CHAT and body is not None and prompt is not None:
        return body, prompt, max_tokens or 0
    max_tokens = max_tokens or settings.INFERENCE_DEFAULT_MAX_TOKENS
    body = {**(body or chat_body(model=model, question_text=question_text, max_tokens=max_tokens))}
    body["max_tokens"] = max_tokens
    return body, prompt or PromptSize.of(body), max_tokens
