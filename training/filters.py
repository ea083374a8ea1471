import django_filters

from core.filters import FilterSet
from training.choices import TrainingStatus
from training.models import TrainingJob


class TrainingJobFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=TrainingStatus.choices)
    model = django_filters.CharFilter(field_name="base_model")

    class Meta:
        model = TrainingJob
        fields = ["status", "model"]
