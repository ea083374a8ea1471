from django.urls import path
from rest_framework.routers import SimpleRouter

from rentals import views

router = SimpleRouter()
router.register("rentals", views.RentalViewSet, basename="rental")
router.register("jobs", views.JobViewSet, basename="job")
router.register("snapshots", views.SnapshotViewSet, basename="snapshot")

urlpatterns = [
    path("rentals/inventory/", views.InventoryView.as_view(), name="rental-inventory"),
    path("rentals/offers/", views.OfferListView.as_view(), name="rental-offers"),
    path("regions/", views.RegionListView.as_view(), name="regions"),
    path("rentals/bulk/<str:operation>/", views.RentalBulkView.as_view(), name="rental-bulk"),
    *router.urls,
]
