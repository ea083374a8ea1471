"""Training's domain errors: rendered by core/error_render.py in each mount's shape."""

from rest_framework import status

from core.errors import Conflict, DomainError, NotFound


class TrainingJobNotFound(NotFound):
    code = "training_job_not_found"


class TrainingFileNotFound(NotFound):
    code = "file_not_found"


class InvalidTrainingFile(DomainError):
    code = "invalid_file"
    attr = "file"


class TrainingFileTooLarge(DomainError):
    status, code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "file_too_large"
    attr = "file"


class UnsafeDatasetUrl(DomainError):
    code = "unsafe_dataset_url"
    attr = "dataset_url"


class TrainingNodeUnavailable(Conflict):
    code = "node_unavailable"


class NoTrainingNodes(DomainError):
    status, code = status.HTTP_503_SERVICE_UNAVAILABLE, "no_capacity"


class TrainingJobNotCancellable(Conflict):
    code = "job_not_cancellable"
