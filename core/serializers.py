"""Serializer pieces every app uses."""

from rest_framework import serializers


class StrictInputMixin:
    """Refuse keys the serializer does not accept for writing, naming them (mass assignment is a bug here).

    A write naming a server-owned field (role, approval, balance, owner...) is a 400, not silently ignored,
    so a client never believes it changed something it cannot.
    """

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            refused = sorted(str(k) for k in data if k not in writable)
            if refused:
                raise serializers.ValidationError(
                    {k: ["This field is read-only or unknown and cannot be written."] for k in refused},
                    code="read_only_field",
                )
        return super().to_internal_value(data)  # type: ignore[misc]


class DetailOut(serializers.Serializer):
    detail = serializers.CharField()
