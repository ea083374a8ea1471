"""OpenAI's fine-tuning API under /v1/ (API.md §13): files and fine_tuning.jobs, the same jobs as the seed paths, so
`openai.OpenAI(base_url=".../v1")` works unchanged. Like inference's /v1 views, not in /api/schema/ (OpenAI
publishes the contract) and errors in OpenAI's shape."""

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.authentication import ApiKeyAuthentication
from clients.choices import KeyScope
from clients.key_limit_types import key_limits_of
from clients.key_limits import key_admit
from clients.permissions import request_client
from core.error_render import openai_body
from core.errors import DomainError
from core.parsers import JSONParser
from training import selectors, services
from training.base_url import public_base_url
from training.errors import InvalidTrainingFile, TrainingJobNotFound
from training.models import TrainingEvent, TrainingFile, TrainingJob
from training.serializers import OpenAIFineTuneCreateIn, TrainingJobOut, parse_file_id

# `learning_rate_multiplier` x this is the learning rate a node is sent (docs/API.md §9, Training).
BASE_LEARNING_RATE = 1e-4


def _error(status: int, message: str, code: str, param: str | None = None) -> Response:
    return Response(openai_body(status, message=message, code=code, param=param), status=status)


def _first_error(detail: object, path: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return path or None, str(detail)


def _exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        return _error(exc.status, exc.detail, exc.code, exc.attr)
    if isinstance(exc, Http404):
        return _error(404, "Not found.", "not_found")
    if isinstance(exc, exceptions.ValidationError):
        param, message = _first_error(exc.detail)
        return _error(400, message, "invalid_request", param)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return _error(401, str(exc.detail), "invalid_api_key")
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        return _error(exc.status_code, str(exc.detail), codes if isinstance(codes, str) else "error")
    return None


class _OpenAIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    def get_exception_handler(self) -> Callable[[Exception, dict], Response | None]:
        return _exception_handler


def _limit(request: Request, default: int = 20) -> int:
    raw = request.query_params.get("limit", "")
    if raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise exceptions.ValidationError({"limit": ["A number in 1..10000."]})
    return int(raw)


def _page(
    request: Request, rows: QuerySet, *, prefix: str, shape: Callable[[Any], dict], default: int = 20
) -> Response:
    """OpenAI's cursor list: newest first, `after` an id of the previous page, `has_more`."""
    limit = _limit(request, default)
    after = request.query_params.get("after", "")
    if after:
        raw = after.removeprefix(prefix)
        if not raw.isdigit():
            raise exceptions.ValidationError({"after": [f"Not an id ({prefix}<n>)."]})
        rows = rows.filter(pk__lt=int(raw))
    found = list(rows.order_by("-pk")[: limit + 1])
    return Response({"object": "list", "data": [shape(r) for r in found[:limit]], "has_more": len(found) > limit})


def _file_object(row: TrainingFile) -> dict:
    return {
        "id": f"file-{row.pk}",
        "object": "file",
        "bytes": row.bytes,
        "created_at": int(row.created_at.timestamp()),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "status_details": None,
    }


def _job_object(job: TrainingJob) -> dict:
    error = TrainingJobOut._error(job)
    return {
        "id": f"ftjob-{job.pk}",
        "object": "fine_tuning.job",
        "created_at": int(job.created_at.timestamp()),
        "error": {**error, "param": None} if error else None,
        "fine_tuned_model": job.fine_tuned_model or None,
        "finished_at": int(job.finished_at.timestamp()) if job.finished_at else None,
        "hyperparameters": {
            "n_epochs": job.epochs,
            "batch_size": job.batch_size,
            "learning_rate_multiplier": round(job.learning_rate / BASE_LEARNING_RATE, 9),
        },
        "model": job.base_model,
        "organization_id": f"client-{job.client_id}",
        "result_files": [],
        "seed": 0,
        "status": job.status,
        "trained_tokens": None,
        "training_file": f"file-{job.training_file_id}" if job.training_file_id else job.dataset_url,
        "validation_file": None,
        "estimated_finish": None,
        "integrations": None,
        "user_provided_suffix": job.suffix,
        # Ours, beside OpenAI's: the seed path's progress, latest metrics and money.
        "progress": job.progress,
        "metrics": job.metrics,
        "charged": str(job.charged),
    }


def _event_object(event: TrainingEvent) -> dict:
    data = {k: getattr(event, k) for k in ("step", "epoch", "loss", "progress") if getattr(event, k) is not None}
    return {
        "id": f"ftevent-{event.pk}",
        "object": "fine_tuning.job.event",
        "created_at": int(event.created_at.timestamp()),
        "level": event.level,
        "message": event.message or (f"Step {event.step}" if event.step is not None else "Progress"),
        "data": data,
        "type": "metrics" if data else "message",
    }


def _job_id(raw: str) -> int:
    number = raw.removeprefix("ftjob-")
    if not number.isdigit() or not 0 < int(number) < 2**62:
        raise TrainingJobNotFound(f"No fine-tuning job {raw!r}.")
    return int(number)


@extend_schema(exclude=True)
class FileListView(_OpenAIView):
    parser_classes = [MultiPartParser, FormParser]

    def get(self, request: Request) -> Response:
        rows = selectors.training_file_list_own(client=request_client(request))
        purpose = request.query_params.get("purpose", "")
        if purpose:
            rows = rows.filter(purpose=purpose)
        return _page(request, rows, prefix="file-", shape=_file_object, default=10000)

    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidTrainingFile("Send the JSONL dataset as the multipart field `file`.")
        purpose = str(request.POST.get("purpose", ""))
        row = services.training_file_create(
            client=request_client(request), upload=upload, filename=upload.name or "data.jsonl", purpose=purpose
        )
        return Response(_file_object(row))


@extend_schema(exclude=True)
class FileDetailView(_OpenAIView):
    def get(self, request: Request, file_id: str) -> Response:
        try:
            number = parse_file_id(file_id)
        except exceptions.ValidationError:
            raise Http404 from None
        return Response(_file_object(selectors.training_file_get_own(client=request_client(request), file_id=number)))


@extend_schema(exclude=True)
class FineTuningJobListView(_OpenAIView):
    def get(self, request: Request) -> Response:
        rows = selectors.training_job_list_own(client=request_client(request))
        return _page(request, rows, prefix="ftjob-", shape=_job_object)

    def post(self, request: Request) -> Response:
        data = OpenAIFineTuneCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        client = request_client(request)
        limits = key_limits_of(request)
        key_admit(limits=limits, model=None, scope=KeyScope.TRAINING)  # budget, rpm (API.md §12)
        hyper = v.get("hyperparameters") or OpenAIFineTuneCreateIn().validate_hyperparameters({})
        job = services.training_job_create(
            client=client,
            model=v["model"],
            training_file=selectors.training_file_get_own(client=client, file_id=v["training_file"]),
            epochs=hyper["n_epochs"],
            batch_size=hyper["batch_size"],
            learning_rate=hyper["learning_rate_multiplier"] * BASE_LEARNING_RATE,
            suffix=v.get("suffix") or "job",
            public_base_url=public_base_url(request),
            api_key_id=None if limits is None else limits.key_id,  # its charge counts to the key's budget
        )
        return Response(_job_object(job))


@extend_schema(exclude=True)
class FineTuningJobDetailView(_OpenAIView):
    def get(self, request: Request, job_id: str) -> Response:
        return Response(
            _job_object(selectors.training_job_get_own(client=request_client(request), job_id=_job_id(job_id)))
        )


@extend_schema(exclude=True)
class FineTuningJobCancelView(_OpenAIView):
    def post(self, request: Request, job_id: str) -> Response:
        job = selectors.training_job_get_own(client=request_client(request), job_id=_job_id(job_id))
        return Response(_job_object(services.training_job_cancel(job=job)))


@extend_schema(exclude=True)
class FineTuningJobEventsView(_OpenAIView):
    def get(self, request: Request, job_id: str) -> Response:
        job = selectors.training_job_get_own(client=request_client(request), job_id=_job_id(job_id))
        return _page(request, selectors.training_event_list(job=job), prefix="ftevent-", shape=_event_object)
