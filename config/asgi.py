"""ASGI entry point: `uvicorn config.asgi:application`.

Django serves everything; the heartbeat's common case is answered in front of it by a lean path
(llm_models/heartbeat_fastpath.py) that hands Django whatever it does not handle.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

django_application = get_asgi_application()

from llm_models.heartbeat_fastpath import HeartbeatFastPath  # noqa: E402  (needs the apps loaded above)

application = HeartbeatFastPath(django_application)
