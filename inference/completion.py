"""A non-stream answer assembled from a node's stream: the marketplace always asks nodes to stream (so a node that
sends no first token in time is dropped, API.md §10), and a caller that asked for one `chat.completion` gets the
chunks joined here (relay.relay_complete)."""

MAX_TOOL_CALLS = 128  # per choice, when assembling a streamed answer


class Completion:
    """A `chat.completion` assembled from the `chat.completion.chunk`s of a stream (choices by `index`; content,
    reasoning and tool-call arguments concatenated; logprobs joined)."""

    def __init__(self) -> None:
        self.head: dict = {}
        self.choices: dict[int, dict] = {}
        self._texts: dict[int, dict[str, list[str]]] = {}  # a choice's text fields, joined once by `payload`

    def add(self, chunk: dict) -> None:
        if not self.head:
            self.head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._add_choice(choice)

    def _add_choice(self, choice: dict) -> None:
        raw = choice.get("index")
        index = raw if isinstance(raw, int) else 0
        slot = self.choices.get(index)
        if slot is None:
            slot = self.choices[index] = {
                "index": index,
                "message": {"role": "assistant", "content": None},
                "finish_reason": None,
            }
            self._texts[index] = {}
        message, texts = slot["message"], self._texts[index]
        delta = choice.get("delta")
        for key, value in (delta if isinstance(delta, dict) else {}).items():
            if key == "tool_calls" and isinstance(value, list):
                _merge_tool_calls(message.setdefault("tool_calls", []), value)
            elif isinstance(value, str) and key != "role":
                parts = texts.get(key)
                if parts is None:
                    parts = texts[key] = [message[key]] if isinstance(message.get(key), str) else []
                    message.setdefault(key, None)  # its place among the keys, filled by `payload`
                parts.append(value)
            elif value is not None:
                texts.pop(key, None)
                message[key] = value
        if choice.get("finish_reason"):
            slot["finish_reason"] = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            joined = slot.setdefault("logprobs", {})
            for key, items in logprobs.items():
                if isinstance(items, list):
                    joined.setdefault(key, []).extend(items)

    def payload(self, *, usage: dict | None) -> dict:
        for index, texts in self._texts.items():
            message = self.choices[index]["message"]
            for key, parts in texts.items():
                message[key] = "".join(parts)
        completion = {"object": "chat.completion", **self.head}
        completion["choices"] = [self.choices[i] for i in sorted(self.choices)]
        if usage is not None:
            completion["usage"] = usage
        return completion


def _merge_tool_calls(calls: list[dict], deltas: list) -> None:
    """Tool-call deltas into whole calls: by `index`, names and arguments concatenated."""
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        raw = delta.get("index")
        # A node's index is untrusted: a huge one must not grow the list without bound.
        index = raw if isinstance(raw, int) and 0 <= raw < MAX_TOOL_CALLS else len(calls)
        if index >= MAX_TOOL_CALLS:
            continue
        while len(calls) <= index:
            calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        for key in ("id", "type"):
            if delta.get(key):
                call[key] = delta[key]
        function = delta.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    call["function"][key] += function[key]
