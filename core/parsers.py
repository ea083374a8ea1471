"""JSON request bodies, parsed one way on every path: DRF's parser and the lean ASGI paths call `json_loads`.

A body that cannot be parsed is a 400 in the mount's shape, never a crash: bad syntax, bad encoding, NaN or
Infinity (not JSON), and nesting deeper than MAX_DEPTH levels. Python's parser raises RecursionError, not
ValueError, on deep nesting (a 200 KB body of 100,000 `[` is enough), and a body just shallow enough to parse
could still blow the stack later in code that walks it (rendering, hashing for idempotency); so depth is bounded
explicitly, the same whatever the stack the request runs on.
"""

import codecs
import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 64  # objects and arrays inside one another; far more than any request of this API needs


class MalformedJson(ValueError):
    """The body is not JSON this API accepts; the message says why."""


def _reject_constant(name: str) -> None:
    raise MalformedJson(f"{name} is not a JSON value.")


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (iterative: no recursion, whatever the depth)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def json_loads(raw: bytes | str) -> Any:
    """The JSON value in `raw`; MalformedJson (a ValueError) for anything this API does not accept as JSON."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise MalformedJson(f"JSON nested more than {MAX_DEPTH} levels deep.") from None
    except MalformedJson:
        raise
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8/16/32
        raise MalformedJson(str(exc)) from None
    # Fewer than MAX_DEPTH brackets in all cannot nest deeper: skip the walk (the common case, and cheap).
    brackets = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")
    if brackets > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise MalformedJson(f"JSON nested more than {MAX_DEPTH} levels deep.")
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser on `json_loads`: every unparsable body is a ParseError (400 `parse_error`)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return json_loads(text)
        except ValueError as exc:  # MalformedJson, or bytes not in the declared encoding
            raise ParseError(f"JSON parse error - {exc}")
