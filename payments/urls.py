from django.urls import path
from rest_framework.routers import SimpleRouter

from payments import views

router = SimpleRouter()
router.register("client/topups", views.TopUpViewSet, basename="topup")
router.register("client/payouts", views.PayoutViewSet, basename="payout")

urlpatterns = [
    path("payments/stripe/webhook/", views.StripeWebhookView.as_view(), name="stripe-webhook"),
    *router.urls,
]
