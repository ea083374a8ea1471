"""Fine-tuning: training jobs on providers' nodes (training/; docs/API.md §13, §8)."""

from config.settings.environment import DATA_DIR, env

# Where the default storage (FileSystemStorage) keeps uploaded datasets; set STORAGES["default"] to a
# django-storages backend (S3, GCS, ...) to keep them there instead.
MEDIA_ROOT = env("MEDIA_ROOT", default=str(DATA_DIR / "media"))
# A dataset uploaded through POST /v1/files: at most this many bytes (the upload path's body cap follows it).
TRAINING_FILE_MAX_BYTES = env.int("TRAINING_FILE_MAX_BYTES", default=8 * 1024 * 1024)
# A job no node has taken this long after it was created fails, everything released.
TRAINING_QUEUE_TIMEOUT_S = env.int("TRAINING_QUEUE_TIMEOUT_S", default=3600)
# How often the training sweep runs: dispatch queued jobs, fail timed-out ones, stop jobs past max_hours or on a
# node that stopped heartbeating.
TRAINING_SWEEP_INTERVAL_S = env.int("TRAINING_SWEEP_INTERVAL_S", default=15)
# This service's public URL (https://api.example.com): the dataset URL a node fetches an uploaded file from. Unset:
# the URL of the request that created the job.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="")
# Progress events kept per job (the oldest reports beyond it are not stored).
TRAINING_MAX_EVENTS_PER_JOB = env.int("TRAINING_MAX_EVENTS_PER_JOB", default=10000)
