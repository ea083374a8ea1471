"""ASGI entry point: `uvicorn config.asgi:application`.

Django serves everything; a chunked request body is read within the body limit in front of everything
(core/asgi.py's RequestBodyCap); two hot endpoints have their common case answered in front of it by lean paths that
hand Django whatever they do not handle: `POST /v1/chat/completions` (inference/v1/asgi.py) and the node
heartbeat (llm_models/heartbeat_fastpath.py). `POST /api/v1/inference/` waits for its answer in front of Django
(inference/seed_asgi.py), not in a request thread.
"""

import gc
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

# Every module is loaded now: move what exists to the collector's permanent generation, so a full collection
# scans what requests create rather than Django's ~150,000 long-lived objects (a 60+ ms pause each), and collect
# the young generation less often. bench/README.md (2026-12-06 08:05) has what it saves under 1,000 streams.
gc.collect()
gc.freeze()
gc.set_threshold(10_000, 20, 20)
