from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core import views as core_views
from inference import generation_views, usage_views
from plans import views as plan_views

api_v1: list[URLPattern | URLResolver] = [
    # Usage roll-ups (docs/API.md §12): before client/ so that clients' router does not take the path.
    path("client/usage/", usage_views.UsageRollupView.as_view(), name="client-usage"),
    # One /v1 request by its `chatcmpl-` id (docs/API.md §11).
    path("generation/", generation_views.GenerationView.as_view(), name="generation"),
    # Plans (docs/API.md §12): plans/ and the caller's client/subscription/.
    path("client/subscription/", plan_views.SubscriptionView.as_view(), name="client-subscription"),
    path("", include("plans.urls")),
    path("client/", include("clients.urls")),
    path("gpu/", include("gpus.urls")),
    path("llm_models/", include("llm_models.urls")),
    path("inference/", include("inference.urls")),
    path("", include("rentals.urls")),  # rentals/ and jobs/
    # The public market: models/, nodes/, stats/ (docs/API.md §7).
    path("", include("market.urls")),
    # Money in and out: client/topups/, client/payouts/, payments/stripe/webhook/ (docs/API.md §15).
    path("", include("payments.urls")),
    # Fine-tuning: training/create/, training/jobs/, and the node's llm_models/files/{id}/ (docs/API.md §13).
    path("", include("training.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    # django-allauth's own pages: email confirmation links, and browser sign-in for the web frontend.
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include(api_v1)),
    # OpenAI-compatible API: an OpenAI SDK works with base_url="http://HOST/v1".
    path("v1/", include("inference.v1.urls")),
    # OpenAI's fine-tuning API: files, fine_tuning/jobs (docs/API.md §13).
    path("v1/", include("training.openai_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    # Prometheus' scrape target (docs/API.md §16).
    path("", include("console.urls")),
]

handler400 = "core.exception_views.bad_request"
handler403 = "core.exception_views.permission_denied"
handler404 = "core.exception_views.not_found"
handler500 = "core.exception_views.server_error"
