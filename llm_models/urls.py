from django.urls import path

from llm_models import views

urlpatterns = [
    path("all-models/", views.AllModelsView.as_view(), name="llm-models-all"),
    path("register/", views.NodeRegisterView.as_view(), name="node-register"),
    path("heartbeat/", views.NodeHeartbeatView.as_view(), name="node-heartbeat"),
    path("deregister/", views.NodeDeregisterView.as_view(), name="node-deregister"),
]
