"""The rentals' domain errors (STYLE.md §6): clients match `code`."""

from rest_framework import status

from core.errors import Conflict, DomainError, NotFound


class NodeNotFound(NotFound):
    code = "node_not_found"


class NodeUnavailable(Conflict):
    code = "node_unavailable"  # offline, not live, or deregistered


class NodeNotRentable(Conflict):
    code = "node_not_rentable"  # no GPU record, or its GPU has no price


class NodeAlreadyRented(Conflict):
    code = "node_already_rented"


class OwnNode(Conflict):
    code = "own_node"


class RentalNotActive(Conflict):
    code = "rental_not_active"


class ActionNotSupported(DomainError):
    status, code = status.HTTP_501_NOT_IMPLEMENTED, "action_not_supported"
