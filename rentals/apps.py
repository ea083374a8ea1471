from django.apps import AppConfig


class RentalsConfig(AppConfig):
    name = "rentals"
    verbose_name = "Rentals"

    def ready(self) -> None:
        from rentals import receivers  # noqa: F401  (connects the signal receivers)
