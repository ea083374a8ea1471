"""Which API key may call which Django view: scopes (API.md §12), and what a key may grant."""

from typing import Any

from clients.choices import KeyScope
from clients.errors import InsufficientScope
from clients.models import ApiKey

# The scope a Django view needs, by the app that serves it, when the view names none (`key_scope`). Apps not
# listed need no scope for reads; their writes need `account` (keys, profile, node registration, payouts).
APP_SCOPES = {"inference": KeyScope.INFERENCE, "rentals": KeyScope.RENTALS, "training": KeyScope.TRAINING}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def scope_needed(*, view: Any, method: str) -> str | None:
    """The scope a key needs to call this Django view with this method (None: any key may)."""
    explicit = getattr(view, "key_scope", None)
    if explicit is not None:
        return explicit or None  # "" marks a view any key may call (GET client/keys/current/)
    app = type(view).__module__.split(".")[0]
    if app in APP_SCOPES:
        return APP_SCOPES[app]
    return None if method in SAFE_METHODS else KeyScope.ACCOUNT


def key_require_scope(*, key: ApiKey, view: Any, method: str) -> None:
    scope = scope_needed(view=view, method=method)
    if scope is not None and scope not in (key.scopes or ()):
        raise InsufficientScope(f"This API key lacks the `{scope}` scope.")


def scopes_grantable(*, granting: ApiKey | None, scopes: list[str]) -> None:
    """A key cannot make a key with more scopes than its own (a session can grant any)."""
    if granting is None:
        return
    extra = sorted(set(scopes) - set(granting.scopes or ()))
    if extra:
        raise InsufficientScope(f"This API key cannot grant scopes it does not have: {', '.join(extra)}.")
