"""Filters that refuse bad values with a 400 naming the parameter, and whose schema says what they accept."""

import re
from typing import TYPE_CHECKING, Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django_filters.rest_framework import FilterSet as RestFilterSet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, filters
from rest_framework.request import Request

if TYPE_CHECKING:
    from rest_framework.views import APIView

# Django's form fields (and DRF's search) refuse a NUL character in a text value.
NO_NUL_PATTERN = r"^[^\u0000]*$"


class SearchFilter(filters.SearchFilter):
    """DRF's `?search=`; a NUL in it is a 400 naming `search` (DRF's error names no parameter)."""

    def get_search_terms(self, request: Request) -> list[str]:
        try:
            return super().get_search_terms(request)
        except exceptions.ValidationError as exc:
            raise exceptions.ValidationError({self.search_param: exc.detail}) from exc

    def get_schema_operation_parameters(self, view: "APIView") -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["pattern"] = NO_NUL_PATTERN
        return parameters


@extend_schema_field({"type": "string", "pattern": NO_NUL_PATTERN})
class TextFilter(django_filters.CharFilter):
    """django-filter's text filter, documented as refusing NUL as its form field does."""


class StrictBooleanField(forms.NullBooleanField):
    """`true`/`false` (or `1`/`0`); absent or empty means "do not filter"; anything else is invalid."""

    widget = forms.TextInput
    default_error_messages = {"invalid": "Enter true or false."}

    def to_python(self, value: Any) -> bool | None:  # type: ignore[override]  # as NullBooleanField in the stubs
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValidationError(self.error_messages["invalid"], code="invalid")

    def validate(self, value: Any) -> None:
        pass


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class StrictIntegerField(forms.IntegerField):
    """Digits only: Django's IntegerField also takes `1.0` and `9007199254740992.0`, which the schema's integer
    does not allow (fuzzers send them as invalid and expect a 400)."""

    def to_python(self, value):
        if value not in self.empty_values and not re.fullmatch(r"\s*[+-]?\d+\s*", str(value)):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


@extend_schema_field(OpenApiTypes.INT)
class IntegerFilter(django_filters.NumberFilter):
    """An integer (`1.5` and `1.0` are a 400); an id that names no row matches nothing rather than an error."""

    field_class = StrictIntegerField

    def get_max_validator(self) -> None:
        return None

    def filter(self, qs: models.QuerySet, value: int | None) -> models.QuerySet:
        # No integer column holds more than 64 bits, and SQLite cannot even compare with such a value (OverflowError):
        # decide it here. Beyond the top, `lt`/`lte` match everything and the rest nothing; below the bottom, the
        # other way round.
        if value is None or _INT64_MIN <= value <= _INT64_MAX:
            return super().filter(qs, value)
        everything = self.lookup_expr in (("lt", "lte") if value > _INT64_MAX else ("gt", "gte"))
        if self.exclude:
            everything = not everything
        return qs if everything else qs.none()


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@extend_schema_field({"type": "number", "maximum": 1e50})
class DecimalFilter(django_filters.NumberFilter):
    """A number; django-filter refuses values above 1e50, so the schema says so."""


class FilterSet(RestFilterSet):
    """django-filter's DRF FilterSet whose filters refuse what their schema does not allow: strict booleans,
    integers for integer fields and ids (a related id is matched, not looked up), bounded numbers, text without NUL."""

    FILTER_DEFAULTS = {
        **RestFilterSet.FILTER_DEFAULTS,
        # django-filter maps each integer field class by name, so each is replaced.
        **{
            field: {"filter_class": IntegerFilter}
            for field in RestFilterSet.FILTER_DEFAULTS
            if issubclass(field, models.IntegerField)
        },
        **{
            field: {**spec, "filter_class": TextFilter}
            for field, spec in RestFilterSet.FILTER_DEFAULTS.items()
            if spec.get("filter_class") is django_filters.CharFilter
        },
        models.BooleanField: {"filter_class": StrictBooleanFilter},
        models.DecimalField: {"filter_class": DecimalFilter},
        models.FloatField: {"filter_class": DecimalFilter},
        models.ForeignKey: {"filter_class": IntegerFilter},
        models.OneToOneField: {"filter_class": IntegerFilter},
    }
