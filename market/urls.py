from django.urls import path

from market import views

urlpatterns = [
    path("models/", views.MarketModelListView.as_view(), name="market-model-list"),
    path("models/<int:pk>/", views.MarketModelDetailView.as_view(), name="market-model-detail"),
    path("models/<int:pk>/providers/", views.MarketModelProvidersView.as_view(), name="market-model-providers"),
    path("nodes/", views.MarketNodeListView.as_view(), name="market-node-list"),
    path("nodes/<int:pk>/", views.MarketNodeDetailView.as_view(), name="market-node-detail"),
    path("nodes/<int:pk>/monitoring/", views.MarketNodeMonitoringView.as_view(), name="market-node-monitoring"),
    path("stats/", views.MarketStatsView.as_view(), name="market-stats"),
]
