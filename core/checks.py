"""System checks run at start (`manage.py migrate`, `runserver`, `check`): settings that cannot work together."""

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register()
def node_heartbeat_timeout_check(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A node told to heartbeat every NODE_HEARTBEAT_INTERVAL_S must not be judged offline sooner than that."""
    interval, timeout = settings.NODE_HEARTBEAT_INTERVAL_S, settings.NODE_HEARTBEAT_TIMEOUT_S
    if timeout > interval:
        return []
    return [
        Warning(
            f"NODE_HEARTBEAT_TIMEOUT_S ({timeout}) is not above NODE_HEARTBEAT_INTERVAL_S ({interval}): nodes "
            "heartbeating at the interval the server hands them will flap offline between heartbeats.",
            hint="Set NODE_HEARTBEAT_TIMEOUT_S to a few intervals (the default is 3 x NODE_HEARTBEAT_INTERVAL_S).",
            id="core.W001",
        )
    ]
