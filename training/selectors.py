"""Reads of fine-tuning: a client's own files and jobs (another client's are 404s)."""

from django.db.models import QuerySet

from clients.models import Client
from llm_models.models import Node
from training.errors import TrainingFileNotFound, TrainingJobNotFound
from training.models import TrainingEvent, TrainingFile, TrainingJob


def training_file_list_own(*, client: Client) -> QuerySet[TrainingFile]:
    return TrainingFile.objects.filter(client=client).order_by("-id")


def training_file_get_own(*, client: Client, file_id: int) -> TrainingFile:
    found = training_file_list_own(client=client).filter(pk=file_id).first()
    if found is None:
        raise TrainingFileNotFound(f"No file {file_id}.")
    return found


def training_file_get_for_node(*, node: Node, file_id: int) -> TrainingFile:
    """A dataset the node may download: one of an open job sent to it. Any other: 404."""
    found = TrainingFile.objects.filter(pk=file_id, jobs__node=node, jobs__status__in=("queued", "running")).first()
    if found is None:
        raise TrainingFileNotFound(f"No file {file_id}.")
    return found


def training_job_list_own(*, client: Client) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(client=client).order_by("-id")


def training_job_get_own(*, client: Client, job_id: int) -> TrainingJob:
    found = training_job_list_own(client=client).filter(pk=job_id).first()
    if found is None:
        raise TrainingJobNotFound(f"No training job {job_id}.")
    return found


def training_event_list(*, job: TrainingJob) -> QuerySet[TrainingEvent]:
    return TrainingEvent.objects.filter(job=job).order_by("id")
