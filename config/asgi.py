"""ASGI entry point: `uvicorn config.asgi:application`.

Django serves everything; a chunked request body is read within the body limit in front of everything
(core/asgi.py's RequestBodyCap); two hot endpoints have their common case answered in front of it by lean paths that
hand Django whatever they do not handle: `POST /v1/chat/completions` (inference/v1/asgi.py) and the node
heartbeat (llm_models/heartbeat_fastpath.py). `POST /api/v1/inference/` waits for its answer in front of Django
(inference/seed_asgi.py), not in a request thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

django_application = get_asgi_application()

from core.asgi import RequestBodyCap  # noqa: E402  (needs the apps loaded above)
from inference.seed_asgi import SeedAnswerWait  # noqa: E402
from inference.v1.asgi import ChatCompletionsLeanPath  # noqa: E402
from llm_models.heartbeat_fastpath import HeartbeatFastPath  # noqa: E402

# RequestBodyCap first: a chunked body reaches every path read and capped, with its length (core/asgi.py).
application = RequestBodyCap(ChatCompletionsLeanPath(HeartbeatFastPath(SeedAnswerWait(django_application))))
