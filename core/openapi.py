"""OpenAPI for our errors: drf-standardized-errors' AutoSchema, taught the errors this project's code returns.

The library documents the errors DRF itself raises. On top of that this schema documents:

- 409 on every write: a `Conflict` DomainError, or an IntegrityError lost to a concurrent request (core/errors.py);
- 413 on every operation with a request body (core/middleware.py refuses oversized bodies);
- 403 on writes that accept a session, whatever the permissions: a session without its CSRF token is refused;
- error `code` enums that include every DomainError code of that status and our authentication failure codes;
- validation errors as DRF reports them: a nested serializer's `required`/`null` under its own name, list items by
  their index (`models.0.name`), a bad `page_size` or `search` (core/pagination.py, core/filters.py), and an entry
  for any other key, carrying StrictInputMixin's `read_only_field` or a DomainError raised with an `attr`;
- `additionalProperties: false` on StrictInputMixin request bodies, which refuse unknown keys; and what request
  strings and decimals really accept (spectacular's patterns let "", "-" and blank strings through);
- `allowEmptyValue` on optional query parameters: an empty value means "not given" everywhere.

A status a single view returns besides these is declared on it: `@extend_schema(responses={503: error_response(503)})`.
"""

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from django.db.models import TextChoices
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import PolymorphicProxySerializer
from drf_standardized_errors import openapi_serializers as std
from drf_standardized_errors.openapi import AutoSchema as StandardAutoSchema
from drf_standardized_errors.openapi_utils import InputDataField
from drf_standardized_errors.settings import package_settings
from inflection import camelize
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.settings import api_settings

from core.errors import DomainError, PayloadTooLarge
from core.filters import SearchFilter
from core.pagination import StandardPagination
from core.serializers import StrictInputMixin

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

_STANDARD_CODES: dict[int, type[TextChoices]] = {
    400: std.ParseErrorCodeEnum,
    401: std.ErrorCode401Enum,
    403: std.ErrorCode403Enum,
    404: std.ErrorCode404Enum,
    405: std.ErrorCode405Enum,
    406: std.ErrorCode406Enum,
    415: std.ErrorCode415Enum,
    429: std.ErrorCode429Enum,
    500: std.ErrorCode500Enum,
}
# Codes raised as DRF exceptions with an explicit `code=` (DomainErrors are found by themselves).
EXTRA_ERROR_CODES: dict[int, tuple[str, ...]] = {
    # clients/authentication.py and llm_models/authentication.py
    401: ("invalid_api_key", "invalid_node_token", "key_expired", "provider_not_approved"),
    # clients/ledger/'s InsufficientFunds, raised by every charging endpoint.
    402: ("insufficient_funds",),
    413: (str(PayloadTooLarge.default_code),),
}
# StrictInputMixin's code for a key the serializer does not accept.
READ_ONLY_FIELD_CODE = "read_only_field"


def _domain_errors() -> list[type[DomainError]]:
    found, stack = [], [DomainError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def error_codes(status: int) -> list[str]:
    """Every `code` an error response with this status can carry."""
    codes = set(_STANDARD_CODES[status].values) if status in _STANDARD_CODES else set()
    codes.update(EXTRA_ERROR_CODES.get(status, ()))
    codes.update(cls.code for cls in _domain_errors() if cls.status == status)
    return sorted(codes)


class ErrorCodeField(serializers.CharField):
    """An error's `code`, documented as the enum `codes()` returns when the schema is generated."""

    def __init__(self, codes: Callable[[], list[str]], **kwargs: Any) -> None:
        self.codes = codes
        super().__init__(**kwargs)


class ErrorAttrField(serializers.CharField):
    """An error's `attr`: a field name ("" for any key); its list indexes and dict keys stand for any index or key."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = name
        super().__init__(**kwargs)


class ErrorCodeFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ErrorCodeField

    def map_serializer_field(self, auto_schema: SpectacularAutoSchema, direction: str) -> dict[str, Any]:
        return {"type": "string", "enum": self.target.codes()}


class ErrorAttrFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ErrorAttrField

    def map_serializer_field(self, auto_schema: SpectacularAutoSchema, direction: str) -> dict[str, Any]:
        name = self.target.name
        if not name:
            return {"type": "string"}
        sep = package_settings.NESTED_FIELD_SEPARATOR
        parts = name.split(sep)
        placeholders = {
            package_settings.LIST_INDEX_IN_API_SCHEMA: r"\d+",
            package_settings.DICT_KEY_IN_API_SCHEMA: ".+",
        }
        if not placeholders.keys() & set(parts):
            return {"type": "string", "enum": [name]}
        pattern = re.escape(sep).join(placeholders.get(part, re.escape(part)) for part in parts)
        return {"type": "string", "pattern": f"^{pattern}$"}


def _meta(ref_name: str) -> type:
    return type("Meta", (), {"ref_name": ref_name})


@functools.cache
def error_response(status: int) -> type[serializers.Serializer]:
    """The body of an error response with this status: `{type, errors: [{code, detail, attr}]}`."""
    item = type(
        f"Error{status}",
        (serializers.Serializer,),
        {
            "code": ErrorCodeField(functools.partial(error_codes, status)),
            "detail": serializers.CharField(),
            "attr": serializers.CharField(allow_null=True),
            # The library's suffix keeps the enum inline instead of a shared `CodeEnum` component.
            "Meta": _meta(f"Error{status}{package_settings.ERROR_COMPONENT_NAME_SUFFIX}"),
        },
    )
    kind = std.ServerErrorEnum if status >= 500 else std.ClientErrorEnum
    return type(
        f"ErrorResponse{status}",
        (serializers.Serializer,),
        {
            "type": serializers.ChoiceField(choices=kind.choices),
            "errors": item(many=True),
            "Meta": _meta(f"ErrorResponse{status}"),
        },
    )


def _field_error(component: str, attr: str, codes: Callable[[], list[str]]) -> type[serializers.Serializer]:
    return type(
        "FieldError",
        (serializers.Serializer,),
        {
            "attr": ErrorAttrField(attr),
            "code": ErrorCodeField(codes),
            "detail": serializers.CharField(),
            "Meta": _meta(component + package_settings.ERROR_COMPONENT_NAME_SUFFIX),
        },
    )


class AutoSchema(StandardAutoSchema):
    def _get_allowed_error_status_codes(self) -> list[str]:
        return [*super()._get_allowed_error_status_codes(), "409", "413"]

    def _should_add_error_response(self, responses: dict, status_code: str) -> bool:
        should = super()._should_add_error_response(responses, status_code)
        if status_code == "409":
            return should and self.method in WRITE_METHODS
        if status_code == "413":
            return should and self.method in ("POST", "PUT", "PATCH")
        return should

    def _should_add_http403_error_response(self) -> bool:
        csrf = self.method in WRITE_METHODS and any(
            isinstance(auth, SessionAuthentication) for auth in self.view.get_authenticators()
        )
        return csrf or super()._should_add_http403_error_response()

    def _get_error_response_serializer(self, status_code: str) -> Any:
        configured = {str(code) for code in (package_settings.ERROR_SCHEMAS or {})}
        if status_code == "400" or status_code in configured:
            return super()._get_error_response_serializer(status_code)
        return error_response(int(status_code))

    def _get_http400_serializer(self) -> PolymorphicProxySerializer:
        variants: dict[str, Any] = {}
        if self._should_add_validation_error_response():
            variants[std.ValidationErrorEnum.VALIDATION_ERROR.value] = (
                self._get_serializer_for_validation_error_response()
            )
        # A DomainError without an attr (bad credentials, a used reset link...) as well as a parse error.
        variants[std.ClientErrorEnum.CLIENT_ERROR.value] = error_response(400)
        return PolymorphicProxySerializer(
            component_name=f"{camelize(self.get_operation_id())}ErrorResponse400",
            serializers=variants,
            resource_type_field_name="type",
        )

    def _get_parameters(self) -> list[dict[str, Any]]:
        parameters = super()._get_parameters()
        for parameter in parameters:
            if parameter["in"] == "query" and not parameter.get("required"):
                # Throughout this API an empty query value (`?user=`) means the parameter was not given.
                parameter.setdefault("allowEmptyValue", True)
        return parameters

    def _paginator_validates(self) -> bool:
        """A paginated list refuses a bad `page_size` with a validation error (core/pagination.py)."""
        paginator = self._get_paginator()
        return self.method == "GET" and isinstance(paginator, StandardPagination) and self._is_list_view()

    def _should_add_validation_error_response(self) -> bool:
        return super()._should_add_validation_error_response() or self._paginator_validates()

    def _get_validation_error_codes_by_field(self, data_fields: list[InputDataField]) -> dict[str, set[str]]:
        codes = super()._get_validation_error_codes_by_field(data_fields)
        if self._paginator_validates():
            codes[StandardPagination.page_size_query_param].add("invalid")
        if self.method == "GET" and getattr(self.view, "search_fields", None):
            for backend in self.get_filter_backends():
                if issubclass(backend, SearchFilter):
                    codes[backend.search_param].add("null_characters_not_allowed")
        # DRF reports a nested serializer that is missing or null under its own name, not its non_field_errors.
        suffix = package_settings.NESTED_FIELD_SEPARATOR + api_settings.NON_FIELD_ERRORS_KEY
        for name in [name for name in codes if name.endswith(suffix)]:
            moved = codes[name] & {"required", "null"}
            if moved:
                codes[name] -= moved
                codes[name.removesuffix(suffix)] |= moved
                if not codes[name]:
                    del codes[name]
        return codes

    def _get_serializer_for_validation_error_response(self) -> type[serializers.Serializer]:
        operation = camelize(self.get_operation_id())
        codes_by_field = self._get_validation_error_codes_by_field(self._determine_fields_with_error_codes())
        variants = [
            _field_error(
                f"{operation}{camelize((name or '').replace(package_settings.NESTED_FIELD_SEPARATOR, '_'))}",
                name,
                functools.partial(sorted, codes),
            )
            for name, codes in codes_by_field.items()
        ]
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            # Errors on any key: refused unknown keys and DomainErrors raised with an attr. Their codes are kept
            # apart from the per-field ones so every error matches exactly one entry of the `oneOf`.
            field_codes = set().union(*codes_by_field.values())

            def other_codes() -> list[str]:
                codes = {READ_ONLY_FIELD_CODE} | {cls.code for cls in _domain_errors()}
                return sorted(codes - field_codes)

            variants.append(_field_error(f"{operation}AnyField", "", other_codes))
        return type(
            "ValidationError",
            (serializers.Serializer,),
            {
                "type": serializers.ChoiceField(choices=std.ValidationErrorEnum.choices),
                "errors": PolymorphicProxySerializer(
                    component_name=f"{operation}Error",
                    serializers=variants,
                    resource_type_field_name=None,
                    many=True,
                ),
                "Meta": _meta(f"{operation}ValidationError"),
            },
        )

    def _map_serializer_field(
        self, field: serializers.Field, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or "$ref" in schema or schema.get("readOnly"):
            return schema
        if isinstance(field, serializers.DecimalField) and field.max_whole_digits is not None and "pattern" in schema:
            # spectacular's pattern also matches "", "-" and "."; and a minimum of 0 rules out the sign.
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            whole, places = field.max_whole_digits, field.decimal_places or 0
            fraction = rf"|\.\d{{1,{places}}}" if places else ""
            dot = rf"(?:\.\d{{0,{places}}})?" if places else ""
            # A maximum of exactly 10^k (below the digits allowed): up to k whole digits, or 10^k itself.
            top, exact_top = field.max_value, ""
            if top is not None and top >= 10 and top == 10 ** (len(str(int(top))) - 1) and len(str(int(top))) <= whole:
                whole = len(str(int(top))) - 1
                exact_top = rf"|{int(top)}(?:\.0{{0,{places}}})?" if places else f"|{int(top)}"
            # A minimum of the smallest step above zero: any value with a non-zero digit.
            positive = ""
            if field.min_value is not None and 0 < field.min_value <= Decimal(1).scaleb(-places):
                positive = "(?=[^1-9]*[1-9])"
            schema["pattern"] = rf"^{positive}{sign}(?:\d{{1,{max(whole, 1)}}}{dot}{fraction}{exact_top})$"
        return schema

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction != "request":
            return schema
        serializer = force_instance(serializer)
        for field in serializer.fields.values():
            prop = schema.get("properties", {}).get(field.field_name)
            if isinstance(field, serializers.CharField) and prop and "$ref" not in prop:
                _refine_string(field, prop)
            elif isinstance(field, serializers.ListField) and isinstance(field.child, serializers.CharField) and prop:
                items = prop.get("items", {})
                if "$ref" not in items:
                    _refine_string(field.child, items)
        if isinstance(serializer, StrictInputMixin):
            schema["additionalProperties"] = False
        return schema


# What Python's str.strip() takes as whitespace, spelled out: `\S` reads differently per regex engine (ECMA and
# Python's re.ASCII leave out \x1c-\x1f and \x85, which DRF strips; the fuzzer drew "\x1f" as a non-blank item).
_STRIPPED = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _refine_string(field: serializers.CharField, schema: dict) -> None:
    """What spectacular leaves out of a request string's schema: DRF refuses NUL characters and values in which an
    inverse regex validator finds its pattern, and strips surrounding whitespace (so only-whitespace is blank)."""
    refused = [r"\u0000"]
    refused += [
        v.regex.pattern if isinstance(v.regex, re.Pattern) else v.regex
        for v in field.validators
        if isinstance(v, RegexValidator) and v.inverse_match
    ]
    lookahead = "".join(rf"(?![\s\S]*(?:{pattern}))" for pattern in refused)
    if "pattern" in schema:
        schema["pattern"] = f"^{lookahead}(?:{schema['pattern']})"
    elif not field.allow_blank and field.trim_whitespace:
        schema["pattern"] = rf"^{lookahead}[\s\S]*[^{_STRIPPED}]"
    else:
        schema["pattern"] = f"^{lookahead}"
