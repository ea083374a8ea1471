"""Small readers of drf-standardized-errors bodies shared by the client API tests."""

from rest_framework.response import Response

LIST_URL = "/api/v1/client/list/"
KEYS_URL = "/api/v1/client/keys/"


def detail_url(client_id: int) -> str:
    return f"{LIST_URL}{client_id}/"


def the_error(response: Response) -> dict:
    """The one error of an error body (fails if there are none or several)."""
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    return errors[0]


def error_attrs(response: Response) -> set[str | None]:
    return {e["attr"] for e in response.json()["errors"]}
