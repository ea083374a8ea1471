"""OpenAI's fine-tuning paths, mounted under /v1/ by config/urls.py (API.md §13)."""

from django.urls import path

from training import openai_views

urlpatterns = [
    path("files", openai_views.FileListView.as_view(), name="openai-files"),
    path("files/<str:file_id>", openai_views.FileDetailView.as_view(), name="openai-file"),
    path("fine_tuning/jobs", openai_views.FineTuningJobListView.as_view(), name="openai-fine-tuning-jobs"),
    path(
        "fine_tuning/jobs/<str:job_id>", openai_views.FineTuningJobDetailView.as_view(), name="openai-fine-tuning-job"
    ),
    path(
        "fine_tuning/jobs/<str:job_id>/cancel",
        openai_views.FineTuningJobCancelView.as_view(),
        name="openai-fine-tuning-job-cancel",
    ),
    path(
        "fine_tuning/jobs/<str:job_id>/events",
        openai_views.FineTuningJobEventsView.as_view(),
        name="openai-fine-tuning-job-events",
    ),
]
