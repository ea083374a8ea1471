"""Money and figures as an operator reads them (the admin): dollars with 2 places, or 6 where a cent hides it."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils.html import format_html
from django.utils.safestring import SafeString


def money(value: object, places: int = 2) -> str:
    """`1234.5` -> `1,234.50` (places 2) or `1,234.500000` (places 6); `-` for nothing."""
    if value is None or value == "":
        return "-"
    try:
        amount = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        return str(value)
    return f"{amount:,.{places}f}"


def money_html(value: object, places: int = 2) -> SafeString:
    """`money()` in a right-aligned cell of a changelist or a form (core/static/core/admin.css)."""
    return format_html('<span class="money">{}</span>', money(value, places))


def number(value: object) -> str:
    """An integer count with thousands separators; `-` for nothing."""
    return "-" if value is None else f"{int(value):,}"  # type: ignore[call-overload]
