"""Uploaded datasets: a fine-tuning JSONL file checked line by line and stored."""

import json
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile

from clients.models import Client
from training.errors import InvalidTrainingFile, TrainingFileTooLarge
from training.models import TrainingFile


def _line_problem(line: bytes) -> str | None:
    """Why one JSONL line is not a chat example ({"messages": [{"role", "content"}, ...]}), or None."""
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid JSON ({exc.__class__.__name__})"
    if not isinstance(row, dict):
        return "not a JSON object"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not an object"
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            return f"messages[{i}].role must be system, user, assistant or tool"
        content = message.get("content")
        if not isinstance(content, str | list) and not (content is None and message.get("role") == "assistant"):
            return f"messages[{i}].content must be a string or a list of parts"
    return None


def training_file_validate(*, data: bytes) -> int:
    """Check a fine-tuning JSONL file line by line; returns its number of examples. InvalidTrainingFile (400)
    names the first bad line (1-based)."""
    count = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        problem = _line_problem(line)
        if problem:
            raise InvalidTrainingFile(f"Line {number}: {problem}.")
        count += 1
    if not count:
        raise InvalidTrainingFile("The file holds no examples (one JSON object with `messages` per line).")
    return count


def training_file_create(*, client: Client, upload: IO[bytes], filename: str, purpose: str) -> TrainingFile:
    """Validate and store an uploaded dataset in the default storage (STORAGES["default"])."""
    if purpose != "fine-tune":
        raise InvalidTrainingFile("Only `purpose: fine-tune` files are accepted.", attr="purpose")
    limit = settings.TRAINING_FILE_MAX_BYTES
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise TrainingFileTooLarge(f"The file is larger than the limit of {limit} bytes.")
    lines = training_file_validate(data=data)
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[-100:] or "data.jsonl"
    row = TrainingFile(
        client=client, filename=filename[:255] or "data.jsonl", purpose=purpose, bytes=len(data), lines=lines
    )
    row.file.save(safe_name, ContentFile(data), save=False)
    row.save()
    return row
