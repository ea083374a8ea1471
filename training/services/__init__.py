"""Writes of fine-tuning (API.md §13): files, jobs, dispatch to nodes, progress, the end of a job and its money.

By job: `files` (datasets checked and stored), `placement` (which node can train), `jobs` (create, dispatch,
cancel, end), `reports` (what a node reports on a `train` command) and `sweep` (the beat task's work). Callers
import from here: `from training import services`.
"""

from training.services.files import training_file_create, training_file_validate
from training.services.jobs import (
    training_job_cancel,
    training_job_create,
    training_job_dispatch,
    training_job_get_for_update,
)
from training.services.placement import trainable_nodes
from training.services.reports import training_job_record_report
from training.services.sweep import training_sweep

__all__ = [
    "trainable_nodes",
    "training_file_create",
    "training_file_validate",
    "training_job_cancel",
    "training_job_create",
    "training_job_dispatch",
    "training_job_get_for_update",
    "training_job_record_report",
    "training_sweep",
]
