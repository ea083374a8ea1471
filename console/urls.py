from django.urls import path

from console import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
]
