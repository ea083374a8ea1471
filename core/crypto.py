"""Symmetric encryption for secrets we must send on (a node's backend API key), keyed from settings."""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    key = getattr(settings, "FIELD_ENCRYPTION_KEY", "") or settings.SECRET_KEY
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


@functools.lru_cache(maxsize=1024)
def decrypt(token: str) -> str:
    """The plain text of `token` ("" if it is not ours). Remembered: the hot path decrypts a node's key per call."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return ""
