from rest_framework.routers import SimpleRouter

from gpus import views

router = SimpleRouter()
router.register("list", views.GpuViewSet, basename="gpu")

urlpatterns = router.urls
