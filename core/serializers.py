"""Serializer pieces every app uses."""

from typing import TYPE_CHECKING, Any

from django.db import models
from django.http import QueryDict
from rest_framework import serializers

# The mixins below are mixed into serializers; to the type checker they are serializers (at run time, plain classes).
if TYPE_CHECKING:
    _SerializerBase = serializers.Serializer
else:
    _SerializerBase = object


def _json_type(field: serializers.Field) -> tuple[str, tuple[type, ...]] | None:
    """The JSON type a field takes (as its OpenAPI schema says), or None where any is fine."""
    if isinstance(field, serializers.BooleanField):
        return "boolean", (bool,)
    if isinstance(field, serializers.CharField):
        return "string", (str,)
    if isinstance(field, serializers.DecimalField):
        return 'decimal string (e.g. "2.50")', (str,)  # money never travels as a JSON float (API.md §0)
    if isinstance(field, serializers.IntegerField) or (
        isinstance(field, serializers.PrimaryKeyRelatedField)
        and (queryset := field.get_queryset()) is not None
        and isinstance(queryset.model._meta.pk, models.IntegerField)
    ):
        return "integer", (int,)
    if isinstance(field, serializers.FloatField):
        return "number", (int, float)
    return None


def _wrong_type(field: serializers.Field, expected: str) -> serializers.ErrorDetail:
    code = "invalid" if "invalid" in field.error_messages else "incorrect_type"
    return serializers.ErrorDetail(f"Expected a JSON {expected}.", code=code)


def _is_a(value: object, types: tuple[type, ...]) -> bool:
    # bool is an int to Python, not to JSON.
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


class StrictTypesMixin(_SerializerBase):
    """Refuse JSON values of the wrong type, naming the field, where DRF would coerce them (`"12"`, `0`, `5`).

    What the schema documents is then exactly what is accepted. Form-encoded bodies carry only strings and are left
    to the fields.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data, QueryDict):
            errors = {}
            for name, field in self.fields.items():
                value = data.get(name)
                if field.read_only or value is None:
                    continue
                expected = _json_type(field)
                if expected and not _is_a(value, expected[1]):
                    errors[name] = [_wrong_type(field, expected[0])]
                elif isinstance(field, serializers.ListField) and isinstance(value, list):
                    # Items too: a list of strings refuses `[1]` rather than storing "1".
                    item = _json_type(field.child)
                    wrong: dict[int, list[serializers.ErrorDetail]] = {
                        i: [_wrong_type(field.child, item[0])]
                        for i, v in enumerate(value)
                        if item and not _is_a(v, item[1])
                    }
                    if wrong:
                        errors[name] = wrong  # type: ignore[assignment]  # DRF nests item errors by index
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class StrictInputMixin(StrictTypesMixin):
    """Refuse keys the serializer does not accept for writing, naming them (mass assignment is a bug here).

    A write naming a server-owned field (role, approval, balance, owner...) is a 400, not silently ignored,
    so a client never believes it changed something it cannot.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            refused = sorted(str(k) for k in data if k not in writable)
            if refused:
                raise serializers.ValidationError(
                    {k: ["This field is read-only or unknown and cannot be written."] for k in refused},
                    code="read_only_field",
                )
        return super().to_internal_value(data)


class DetailOut(serializers.Serializer):
    detail = serializers.CharField()
