"""ASGI entry point: `uvicorn config.asgi:application`.

Django serves everything; two hot endpoints have their common case answered in front of it by lean paths that
hand Django whatever they do not handle: `POST /v1/chat/completions` (inference/lean_chat.py) and the node
heartbeat (llm_models/heartbeat_fastpath.py).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

django_application = get_asgi_application()

from inference.lean_chat import ChatCompletionsLeanPath  # noqa: E402  (needs the apps loaded above)
from llm_models.heartbeat_fastpath import HeartbeatFastPath  # noqa: E402

application = ChatCompletionsLeanPath(HeartbeatFastPath(django_application))
