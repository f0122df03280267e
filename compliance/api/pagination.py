"""The API's pagination: a cursor is the client's to write, so it is checked before it reaches a query."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination


class CheckedCursorPagination(CursorPagination):
    """DRF's cursor pagination, answering NotFound("Invalid cursor") for any cursor it cannot use.

    DRF itself rejects a cursor that is not base64 or whose offset is not a number, but passes the
    position (`p`) straight into `filter(<ordering field>__lt=position)`: a cursor that decodes to
    `p=abc` made Django's DateTimeField raise its own ValidationError, which no API error handler
    knows, and the list answered 500. Here the position is parsed and adapted for the database the
    way the filter would, before any query runs. The ordering must name a field of the model."""

    def paginate_queryset(self, queryset, request, view=None):
        self.model, self.connection = queryset.model, connections[queryset.db]
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and not self.is_usable_position(cursor.position):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def is_usable_position(self, position: str) -> bool:
        field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
        if "\x00" in position:
            return False  # PostgreSQL refuses NUL in any text it is sent
        try:
            # OverflowError: an aware datetime near year 1 or 9999 that SQLite's adapter moves to UTC.
            field.get_db_prep_value(field.to_python(position), self.connection, prepared=False)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            return False
        return True
