"""JSON on the hot path, encoded and decoded with orjson (several times faster than the standard library on the
small objects the /v1 relay handles per chunk), falling back to the standard library for what orjson refuses but
JSON allows (integers beyond 64 bits, non-string keys in what we encode), so a value is never refused here that
the standard library would take.

- `loads(raw)`: a JSON document from bytes; ValueError (json.JSONDecodeError or UnicodeDecodeError) if it is not
  one. What orjson refuses is parsed again by the standard library, so it accepts what `json.loads` accepts; one
  difference: orjson reads an integer beyond 64 bits as a float. For what nodes send (a count that is not an int
  is treated as missing); request bodies go through core/parsers.json_loads, which keeps integers exact.
- `dumps(value, default=None)`: compact JSON as bytes (UTF-8, non-ASCII characters as they are).
"""

import json
from collections.abc import Callable
from typing import Any

import orjson


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # raises the standard library's error where the document is not JSON at all


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`default`: what an object JSON has no type for becomes (e.g. `str`), as in json.dumps."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: a big integer, a non-string key, ...
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default).encode()
