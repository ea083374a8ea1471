from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import checks, db  # noqa: F401  (checks register themselves)

        db.connect_signals()
