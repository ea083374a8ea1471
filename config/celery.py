"""The Celery application: tasks are discovered in each app's tasks.py."""

import os
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from core import request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("gpu_marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A task published while a request is served carries the request's id (a message header), so that the worker's log
# lines and its calls to nodes name the same id (docs/API.md §16).
REQUEST_ID_HEADER = "gm_request_id"


@before_task_publish.connect
def _publish_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    rid = request_id.current.get()
    if rid is not None and headers is not None:
        headers[REQUEST_ID_HEADER] = rid


def _delivered(task: Any) -> bool:
    # A task run eagerly (inline, tests) runs inside the request that called it, which already has its id.
    return task is not None and not getattr(task.request, "is_eager", False)


@task_prerun.connect
def _adopt_request_id(task: Any = None, **kwargs: Any) -> None:
    if _delivered(task):
        request_id.current.set(getattr(task.request, REQUEST_ID_HEADER, None))


@task_postrun.connect
def _drop_request_id(task: Any = None, **kwargs: Any) -> None:
    if _delivered(task):
        request_id.current.set(None)
