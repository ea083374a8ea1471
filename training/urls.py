from django.urls import path
from rest_framework.routers import SimpleRouter

from training import views

router = SimpleRouter()
router.register("training/jobs", views.TrainingJobViewSet, basename="training-job")

urlpatterns = [
    path("training/create/", views.TrainingJobCreateView.as_view(), name="training-create"),
    path("llm_models/files/<int:file_id>/", views.TrainingFileDownloadView.as_view(), name="training-file-download"),
    *router.urls,
]
