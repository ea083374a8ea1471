"""Reads of inference requests: each caller sees only its own (admins see all); others' rows are 404."""

from django.db.models import Prefetch, QuerySet

from clients.models import Client
from core.errors import NotFound
from inference.models import InferenceBatch, InferenceRequest


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


# Our ids (API.md §11): a completion's `id` is this prefix and its record's unique key, so the record is found by it.
GENERATION_ID_PREFIX = "chatcmpl-"


def generation_id(row_key: str) -> str:
    """The `chatcmpl-` id of the request whose record has this unique key."""
    return GENERATION_ID_PREFIX + row_key


def inference_get_by_generation_id(*, client: Client, generation_id: str) -> InferenceRequest:
    """The caller's own request with this `chatcmpl-` id; any other id, another client's included, is 404."""
    key = generation_id.removeprefix(GENERATION_ID_PREFIX)
    row = None
    if key != generation_id and key:
        # The record's unique key (a unique index): the one line to change if the column is renamed.
        row = InferenceRequest.objects.filter(client=client, hold_key=key).first()
    if row is None:
        raise NotFound(f"No generation of yours has the id {generation_id!r}.")
    return row
