"""Reads of inference requests: each caller sees only its own (admins see all); others' rows are 404."""

from django.db.models import Prefetch, QuerySet

from clients.models import Client
from core.errors import NotFound
from inference.models import InferenceBatch, InferenceRequest
from inference.v1.protocol import ID_PREFIXES


def inference_list_visible(*, viewer: Client) -> QuerySet[InferenceRequest]:
    qs = InferenceRequest.objects.all()
    return qs if viewer.is_admin else qs.filter(client=viewer)


def inference_batch_get_visible(*, viewer: Client, batch_id: int) -> InferenceBatch:
    qs = InferenceBatch.objects.prefetch_related(Prefetch("items", InferenceRequest.objects.order_by("id")))
    if not viewer.is_admin:
        qs = qs.filter(client=viewer)
    batch = qs.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound("No batch with this id.")
    return batch


def inference_get_by_generation_id(*, client: Client, generation_id: str) -> InferenceRequest:
    """The caller's own request with this id (`chatcmpl-`, `cmpl-` or `emb-`: API.md §11, `protocol.response_id`);
    any other id, another client's included, is 404."""
    row = None
    for endpoint, prefix in ID_PREFIXES.items():
        key = generation_id.removeprefix(prefix)
        if key != generation_id and key:
            row = InferenceRequest.objects.filter(client=client, request_key=key, endpoint=endpoint).first()
            break
    if row is None:
        raise NotFound(f"No generation of yours has the id {generation_id!r}.")
    return row
