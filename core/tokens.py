"""Bearer secrets: random, prefixed so a leaked one is recognisable, stored only as a hash."""

import hashlib
import secrets
from dataclasses import dataclass

CLIENT_KEY_PREFIX = "gmk_"
NODE_TOKEN_PREFIX = "gmn_"


@dataclass(frozen=True)
class IssuedSecret:
    """A freshly generated secret: `raw` is shown once; the rest is what we store."""

    raw: str
    digest: str
    last4: str


def hash_secret(raw: str) -> str:
    """SHA-256 of a secret. The secrets carry 240 bits of entropy, so a fast hash is safe to look up by."""
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_secret(prefix: str) -> IssuedSecret:
    raw = prefix + secrets.token_urlsafe(30)
    return IssuedSecret(raw=raw, digest=hash_secret(raw), last4=raw[-4:])


def mask(prefix: str, last4: str) -> str:
    """The form shown everywhere but at creation: prefix and last four characters."""
    return f"{prefix}...{last4}" if last4 else ""
