"""Writes for GPU records."""

from django.contrib.auth.models import User
from django.db import transaction

from gpus.models import Gpu
from gpus.normalize import normalize_gpu_model


@transaction.atomic
def gpu_create(*, user: User, **fields: object) -> Gpu:
    """Describe a GPU machine; `gpu_model` is normalised, and derived from `gpu_info` when not given."""
    fields["gpu_model"] = normalize_gpu_model(str(fields.get("gpu_model") or fields.get("gpu_info", "")))
    return Gpu.objects.create(user=user, **fields)


@transaction.atomic
def gpu_update(*, gpu: Gpu, **fields: object) -> Gpu:
    """Change a GPU; a blank `gpu_model`, or one derived from the old `gpu_info`, follows the new `gpu_info`."""
    if fields.get("gpu_model"):
        fields["gpu_model"] = normalize_gpu_model(str(fields["gpu_model"]))
    elif "gpu_model" in fields or ("gpu_info" in fields and gpu.gpu_model in ("", normalize_gpu_model(gpu.gpu_info))):
        fields["gpu_model"] = normalize_gpu_model(str(fields.get("gpu_info", gpu.gpu_info)))
    for name, value in fields.items():
        setattr(gpu, name, value)
    gpu.save(update_fields=[*fields, "updated_at"])
    return gpu


def gpu_delete(*, gpu: Gpu) -> None:
    """Remove a GPU record; a node that pointed at it stays registered but can no longer be rented."""
    gpu.delete()
