from django.apps import AppConfig


class LlmModelsConfig(AppConfig):
    name = "llm_models"
    verbose_name = "Nodes and models"

    def ready(self) -> None:
        from llm_models import receivers  # noqa: F401  (connects the signal receivers)
