from django import template
from django.utils.safestring import SafeString

from core import formatting

register = template.Library()


@register.filter
def money(value: object, places: int = 2) -> SafeString:
    return formatting.money_html(value, places)


@register.filter
def number(value: object) -> str:
    return formatting.number(value)
