from django.urls import path

from inference.v1 import views

urlpatterns = [
    path("chat/completions", views.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("completions", views.CompletionsView.as_view(), name="openai-completions"),
    path("embeddings", views.EmbeddingsView.as_view(), name="openai-embeddings"),
    path("models", views.ModelListView.as_view(), name="openai-models"),
    # Model ids hold slashes (`org/name`): `path` takes the rest of the URL.
    path("models/<path:model_id>", views.ModelDetailView.as_view(), name="openai-model"),
]
