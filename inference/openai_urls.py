from django.urls import path

from inference import openai_views

urlpatterns = [
    path("chat/completions", openai_views.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("models", openai_views.ModelListView.as_view(), name="openai-models"),
    # Model ids hold slashes (`org/name`): `path` takes the rest of the URL.
    path("models/<path:model_id>", openai_views.ModelDetailView.as_view(), name="openai-model"),
]
