from rest_framework.routers import SimpleRouter

from inference import views

router = SimpleRouter()
router.register("", views.InferenceViewSet, basename="inference")

urlpatterns = router.urls
