from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        # x402 serves /v1/chat/completions requests that come without an API key (inference/v1/keyless.py's hook):
        # inference never imports payments, payments plugs itself in.
        from inference.v1 import keyless
        from payments import x402

        keyless.register(enabled=x402.enabled, serve=x402.serve_keyless)
