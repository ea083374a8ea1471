from rest_framework.routers import SimpleRouter

from plans import views

router = SimpleRouter()
router.register("plans", views.PlanViewSet, basename="plan")

urlpatterns = router.urls
