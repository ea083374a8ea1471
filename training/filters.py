import django_filters

from core.filters import FilterSet, TextFilter
from training.choices import TrainingStatus
from training.models import TrainingJob


class TrainingJobFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=TrainingStatus.choices)
    model = TextFilter(field_name="base_model")

    class Meta:
        model = TrainingJob
        fields = ["status", "model"]
