"""Writes for GPU records."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from gpus.models import Gpu
from gpus.normalize import normalize_gpu_model


@transaction.atomic
def gpu_create(*, user: AbstractBaseUser, **fields: object) -> Gpu:
    """Describe a GPU machine; `gpu_model` is derived from `gpu_info` when not given."""
    if not fields.get("gpu_model"):
        fields["gpu_model"] = normalize_gpu_model(str(fields.get("gpu_info", "")))
    return Gpu.objects.create(user=user, **fields)


@transaction.atomic
def gpu_update(*, gpu: Gpu, **fields: object) -> Gpu:
    if fields.get("gpu_model"):
        fields["gpu_model"] = normalize_gpu_model(str(fields["gpu_model"]))
    elif "gpu_info" in fields and not gpu.gpu_model:
        fields["gpu_model"] = normalize_gpu_model(str(fields["gpu_info"]))
    for name, value in fields.items():
        setattr(gpu, name, value)
    gpu.save(update_fields=[*fields, "updated_at"])
    return gpu


def gpu_delete(*, gpu: Gpu) -> None:
    """Remove a GPU record; a node that pointed at it stays registered but can no longer be rented."""
    gpu.delete()
