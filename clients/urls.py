from django.urls import path
from rest_framework.routers import SimpleRouter

from clients import views

router = SimpleRouter()
router.register("list", views.ClientViewSet, basename="client")
router.register("keys", views.ApiKeyViewSet, basename="api-key")
router.register("ledger", views.LedgerEntryViewSet, basename="ledger-entry")

urlpatterns = [
    path("register/", views.ClientRegisterView.as_view(), name="client-register"),
    path("login/", views.ClientLoginView.as_view(), name="client-login"),
    path("logout/", views.ClientLogoutView.as_view(), name="client-logout"),
    path("password-reset/", views.ClientPasswordResetView.as_view(), name="client-password-reset"),
    path(
        "reset-password/<str:uidb64>/<str:token>/",
        views.ClientResetPasswordView.as_view(),
        name="client-reset-password",
    ),
    path("google-auth/", views.ClientGoogleAuthView.as_view(), name="client-google-auth"),
    *router.urls,
]
