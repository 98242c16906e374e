"""DRF fields that refuse instead of coercing: `123` is not a name, `"yes"` is not a boolean."""
from __future__ import annotations

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):  # type: ignore[override]
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"not_a_boolean": "Must be true or false."}

    def to_internal_value(self, data):  # type: ignore[override]
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data
