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


class NodeLacksCapability(Conflict):
    code = "node_lacks_capability"  # e.g. an image for a node without the `containers` capability


class RentalNotExtendable(Conflict):
    code = "rental_not_extendable"  # pay as you go has no end to extend


class TermTooLong(DomainError):
    code, attr = "term_too_long", "hours"


class SnapshotOnOtherNode(DomainError):
    code, attr = "snapshot_on_other_node", "snapshot_id"
