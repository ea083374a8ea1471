"""Multimodal prompt sizing (inference/prompt_parts.py): OpenAI's tile rule, image headers, WAV durations, and the
prompt size the hold and billing use."""

import base64
import io
import struct
import wave
import zlib
from decimal import Decimal

import pytest

from inference import metering
from inference.metering import Delivery, PromptSize
from inference.routing import Candidate
from inference.v1.prompt_parts import (
    UNSIZED_PART_TOKENS,
    MediaPromptSize,
    image_dimensions,
    media_tokens,
    part_tokens,
    prompt_size,
    tile_tokens,
    wav_seconds,
)


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 4) + b"\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + dqt + sof + b"\xff\xda"


def webp_vp8x(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(payload)) + b"WEBP" + b"VP8X" + struct.pack("<I", 10) + payload


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + bits.to_bytes(4, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(payload)) + b"WEBP" + b"VP8L" + struct.pack("<I", 5) + payload


def wav(seconds: float, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(url: str, detail: str | None = None) -> dict:
    image = {"url": url, **({"detail": detail} if detail else {})}
    return {"type": "image_url", "image_url": image}


# OpenAI's published examples of the rule.
@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [((1024, 1024), "high", 765), ((2048, 4096), "high", 1105), ((4096, 8192), "low", 85), ((512, 512), "auto", 255)],
)
def test_the_tile_rule_matches_openais_examples(size, detail, tokens):
    assert tile_tokens(*size, detail=detail) == tokens


@pytest.mark.parametrize("make", [png, gif, jpeg, webp_vp8x, webp_vp8l])
def test_image_dimensions_come_from_the_header(make):
    assert image_dimensions(make(1234, 567)) == (1234, 567)


def test_unknown_or_truncated_images_have_no_dimensions():
    assert image_dimensions(b"not an image") is None
    assert image_dimensions(png(10, 10)[:20]) is None
    assert image_dimensions(jpeg(10, 10)[:12]) is None


def test_a_wav_header_gives_the_duration():
    assert wav_seconds(wav(2.0)) == pytest.approx(2.0)
    assert wav_seconds(b"RIFF....WAVEjunk") is None
    assert wav_seconds(b"ID3 an mp3") is None


def test_an_image_in_a_data_url_is_counted_by_the_rule():
    assert part_tokens(image_part(data_url(png(1024, 1024))), context_window=8192) == 765
    assert part_tokens(image_part(data_url(jpeg(1024, 1024), "image/jpeg"), "low"), context_window=8192) == 85
    assert part_tokens({"type": "text", "text": "hello"}, context_window=8192) == 0


def test_a_jpeg_whose_frame_header_is_far_in_is_still_sized():
    exif = b"\xff\xe1" + struct.pack(">H", 60_002) + b"\x00" * 60_000  # a large APP1 (EXIF) before the frame
    data = jpeg(640, 480)
    data = data[:2] + exif + data[2:]

    assert part_tokens(image_part(data_url(data, "image/jpeg")), context_window=8192) == tile_tokens(640, 480)


def test_an_image_that_cannot_be_sized_counts_as_the_context_window():
    remote = image_part("https://example.com/cat.png")

    assert part_tokens(remote, context_window=8192) == 8192
    assert part_tokens(remote, context_window=None) == UNSIZED_PART_TOKENS
    assert part_tokens(image_part(remote["image_url"]["url"], "low"), context_window=8192) == 85
    assert part_tokens({"type": "file", "file": {"file_data": "..."}}, context_window=4096) == 4096
    assert part_tokens(image_part("data:image/png;base64,bm90IGFuIGltYWdl"), context_window=4096) == 4096


def test_audio_is_counted_by_its_duration_and_unsizable_audio_as_the_window():
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav(4.0)).decode(), "format": "wav"}}
    mp3 = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"ID3....").decode(), "format": "mp3"}}

    assert part_tokens(part, context_window=8192) == 100
    assert part_tokens(part, context_window=50) == 50
    assert part_tokens(mp3, context_window=8192) == 8192


def test_media_of_a_whole_prompt_is_at_most_the_window():
    big = image_part(data_url(png(2048, 2048)))  # 765
    messages = [{"role": "user", "content": [{"type": "text", "text": "look"}, big, big]}, {"role": "user"}]

    assert media_tokens(messages, context_window=8192) == 1530
    assert media_tokens(messages, context_window=1000) == 1000


def test_a_text_prompt_is_sized_as_before():
    body = {"messages": [{"role": "user", "content": "hello there"}]}

    assert prompt_size(body, context_window=8192) == PromptSize.of(body)


def test_an_image_raises_the_hold_and_the_billable_prompt_tokens():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "what is this"}, image_part(data_url(png(1024, 1024)))],
            }
        ]
    }
    text = PromptSize.of(body)

    size = prompt_size(body, context_window=8192)

    assert isinstance(size, MediaPromptSize)
    assert (size.estimate, size.cap) == (text.estimate + 765, text.cap + 765)
    # The node reports the image's tokens: they are billed, where the text-only cap would have cut them.
    delivery = Delivery(
        started=True, relayed_bytes=10, relayed_chars=10, usage={"prompt_tokens": 800, "completion_tokens": 2}
    )
    assert metering.meter(delivery, prompt=text, max_tokens=50).prompt_tokens == text.cap < 800
    assert metering.meter(delivery, prompt=size, max_tokens=50).prompt_tokens == 800
    node = Candidate(1, 1, "http://x/v1", "", Decimal(1000), Decimal(1000))
    assert metering.max_cost(prompt=size, max_tokens=50, candidates=[node]) > metering.max_cost(
        prompt=text, max_tokens=50, candidates=[node]
    )
