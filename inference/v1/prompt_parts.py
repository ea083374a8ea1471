"""How many tokens a prompt with image and audio parts may take (API.md §11 "Multimodal prompts"), for the hold
and the billing caps.

Text is sized as `metering.PromptSize` sizes it (characters / 4 to estimate, bytes to cap). Each other part adds
tokens to both:

- an image (`image_url`): OpenAI's tile rule. `detail: low` is 85 tokens; `high` / `auto` (the default): the
  image is scaled to fit 2048x2048, then its shortest side down to 768, and costs 170 per 512-px tile plus 85.
  Its size is read from the header bytes of a `data:` URL (PNG, JPEG, GIF, WebP); an image that cannot be sized
  (a remote URL, another format) counts as the whole context window.
- audio (`input_audio`): AUDIO_TOKENS_PER_S per second, the duration read from a WAV header; other formats count
  as the whole context window.
- any other non-text part (`file`, `video_url`, ...): the whole context window.

A part is never counted above the context window. Without a known window, an unsizable part counts as
UNSIZED_PART_TOKENS. Use `prompt_size(body, context_window=...)` wherever `PromptSize.of(body)` is used: it is a
PromptSize whose `estimate` and `cap` include the parts, so a node's reported prompt tokens for an image are billed
(up to the cap), not cut to a text-only estimate.
"""

import base64
import binascii
import math
import struct
from dataclasses import dataclass

from inference.metering import PromptSize

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
BASE_TOKENS = 85
TILE_PX = 512
FIT_PX = 2048
SHORT_SIDE_PX = 768
AUDIO_TOKENS_PER_S = 25  # Whisper-style encoders (Qwen2-Audio, Ultravox): one token per 40 ms; OpenAI's is 10
# An unsizable part when the context window is unknown: the tile rule's largest image (768x2048: 8 tiles).
UNSIZED_PART_TOKENS = TILE_TOKENS * 8 + BASE_TOKENS


@dataclass(frozen=True)
class MediaPromptSize(PromptSize):
    """A PromptSize plus the tokens of its image/audio parts, added to both the estimate and the cap."""

    media_tokens: int = 0

    @property
    def estimate(self) -> int:
        return super().estimate + self.media_tokens

    @property
    def cap(self) -> int:
        return super().cap + self.media_tokens


def tile_tokens(width: int, height: int, *, detail: str = "auto") -> int:
    """OpenAI's token count of a `width`x`height` image at `detail`."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    w, h = float(width), float(height)
    if max(w, h) > FIT_PX:
        scale = FIT_PX / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > SHORT_SIDE_PX:
        scale = SHORT_SIDE_PX / min(w, h)
        w, h = w * scale, h * scale
    return TILE_TOKENS * math.ceil(w / TILE_PX) * math.ceil(h / TILE_PX) + BASE_TOKENS


# Base64 characters decoded first to find an image's header (4 KiB of bytes: PNG, GIF and WebP need 30, a JPEG's
# frame header usually comes within it); the whole payload only when that did not suffice.
_HEADER_CHARS = 4096 * 4 // 3


def _b64(payload: str) -> bytes | None:
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


def _data_url_payload(url: str) -> str | None:
    """The base64 payload of a `data:` URL, None for any other URL or a malformed one."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    return payload if sep and header.endswith(";base64") else None


def data_url_image_dimensions(url: str) -> tuple[int, int] | None:
    """(width, height) of the image in a base64 `data:` URL, decoding no more of it than its header needs."""
    payload = _data_url_payload(url)
    if payload is None:
        return None
    head = _b64(payload[:_HEADER_CHARS])
    size = image_dimensions(head) if head is not None else None
    if size is None and len(payload) > _HEADER_CHARS:
        whole = _b64(payload)
        size = image_dimensions(whole) if whole is not None else None
    return size


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, GIF, WebP or JPEG image; None if unrecognised or truncated."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return (w, h) if w and h else None
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return (w, h) if w and h else None
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_dimensions(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_dimensions(data)
    except struct.error:
        return None
    return None


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return (w & 0x3FFF, h & 0x3FFF) if w & 0x3FFF and h & 0x3FFF else None
    return None


# JPEG start-of-frame markers (C0-CF but DHT C4, JPG C8 and DAC CC) carry the image's height and width.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return (w, h) if w and h else None
        if marker == 0xDA or length < 2:  # image data begins: no frame header seen
            return None
        i += 2 + length
    return None


def wav_seconds(data: bytes) -> float | None:
    """The duration of a RIFF/WAVE file from its `fmt ` byte rate and `data` size; None if not a WAV."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    i, byte_rate = 12, 0
    while i + 8 <= len(data):
        chunk, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if chunk == b"fmt " and i + 16 <= len(data):
            byte_rate = int.from_bytes(data[i + 16 : i + 20], "little")
        elif chunk == b"data":
            # The declared size may exceed what was sent (a streaming writer's placeholder): count what is there.
            size = min(size, len(data) - i - 8)
            return size / byte_rate if byte_rate else None
        i += 8 + size + (size & 1)
    return None


TEXT_PARTS = ("text", "input_text", "refusal")


def has_parts(body: dict) -> bool:
    """Whether any message has a non-text content part (then sizing it may need the context window)."""
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in TEXT_PARTS for p in content):
            return True
    return False


def part_tokens(part: dict, *, context_window: int | None) -> int:
    """Tokens one non-text content part may take (see the module docstring); 0 for text parts."""
    ceiling = context_window if context_window is not None else UNSIZED_PART_TOKENS
    kind = part.get("type")
    if kind in TEXT_PARTS:
        return 0
    tokens: int | None = None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
        if detail == "low":
            tokens = LOW_DETAIL_TOKENS
        elif isinstance(url, str) and (size := data_url_image_dimensions(url)) is not None:
            tokens = tile_tokens(*size, detail=str(detail))
    elif kind == "input_audio":
        audio = part.get("input_audio")
        payload = audio.get("data") if isinstance(audio, dict) else None
        data = _b64(payload) if isinstance(payload, str) else None
        seconds = wav_seconds(data) if data is not None else None
        tokens = math.ceil(seconds * AUDIO_TOKENS_PER_S) if seconds is not None else None
    return min(tokens, ceiling) if tokens is not None else ceiling


def media_tokens(messages: object, *, context_window: int | None) -> int:
    """The tokens of every non-text part of `messages`, at most the context window in all."""
    total = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            total += sum(part_tokens(p, context_window=context_window) for p in content if isinstance(p, dict))
    return min(total, context_window) if context_window is not None else total


def prompt_size(body: dict, *, context_window: int | None) -> PromptSize:
    """The prompt's size for the hold and the caps, media included: `PromptSize.of(body)` when the prompt is text
    only (nothing is added), else a MediaPromptSize."""
    text = PromptSize.of(body)
    media = media_tokens(body.get("messages"), context_window=context_window)
    if not media:
        return text
    return MediaPromptSize(chars=text.chars, bytes=text.bytes, messages=text.messages, media_tokens=media)
