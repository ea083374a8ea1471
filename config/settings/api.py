"""The REST API: Django REST framework, its error format (drf-standardized-errors) and the OpenAPI schema."""

from config.settings.environment import env

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clients.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "core.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON bodies parse one way on every path (core/parsers.py): any body that cannot be parsed is a 400.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "auth": env("AUTH_THROTTLE_RATE", default="30/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
DRF_STANDARDIZED_ERRORS = {
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
    "EXCEPTION_HANDLER_CLASS": "core.errors.ExceptionHandler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Marketplace API",
    "DESCRIPTION": "Clients, GPU providers, nodes, inference and rentals. See docs/API.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Tags (the groups of Swagger UI and ReDoc) from the path's first part after this, not "api" for everything.
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Request bodies are documented as JSON, the API's format (the form parsers stay for the browsable API).
    "PARSER_WHITELIST": ["core.parsers.JSONParser"],
    "ENUM_NAME_OVERRIDES": {
        "ValidationErrorEnum": "drf_standardized_errors.openapi_serializers.ValidationErrorEnum.choices",
        "ClientErrorEnum": "drf_standardized_errors.openapi_serializers.ClientErrorEnum.choices",
        "ServerErrorEnum": "drf_standardized_errors.openapi_serializers.ServerErrorEnum.choices",
        "ClientRoleEnum": "clients.choices.ClientRole.choices",
        "NodeStatusEnum": "llm_models.choices.NodeStatus.choices",
        "InferenceStatusEnum": "inference.choices.InferenceStatus.choices",
        "InferenceChannelEnum": "inference.choices.InferenceChannel.choices",
        "RentalStatusEnum": "rentals.choices.RentalStatus.choices",
        "NodeCommandStatusEnum": "llm_models.choices.NodeCommandStatus.choices",
        "NodeCommandActionEnum": "llm_models.choices.NodeCommandAction.choices",
        "LedgerAccountKindEnum": "clients.choices.LedgerAccountKind.choices",
        "LedgerEntryKindEnum": "clients.choices.LedgerEntryKind.choices",
    },
    "POSTPROCESSING_HOOKS": ["drf_standardized_errors.openapi_hooks.postprocess_schema_enums"],
}
