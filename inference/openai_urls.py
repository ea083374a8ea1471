from django.urls import path

from inference import openai_views

urlpatterns = [
    path("chat/completions", openai_views.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("models", openai_views.ModelListView.as_view(), name="openai-models"),
]
