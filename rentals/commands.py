"""The lifecycle commands a rented node is sent (start, stop, reset, end), and the row lock that every write to an
active rental takes first (the rental's services, its commands and the pay-as-you-go charging all share it)."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from llm_models import services as node_services
from llm_models.choices import NodeCommandAction
from llm_models.models import NodeCommand
from rentals.choices import RentalAction, RentalStatus
from rentals.errors import ActionNotSupported, RentalNotActive
from rentals.models import Rental


def lock_active(rental_id: int) -> Rental | None:
    """The rental, row-locked, if it is still active (a concurrent close makes this None once it commits)."""
    return (
        Rental.objects.select_for_update(of=("self",))
        .select_related("node__owner")
        .filter(pk=rental_id, status=RentalStatus.ACTIVE)
        .first()
    )


def is_over(rental: Rental, now: datetime) -> bool:
    return rental.ends_at is not None and rental.ends_at <= now


def queue_command(rental: Rental, action: str, **params: object) -> NodeCommand:
    return node_services.node_command_queue(
        node=rental.node, rental_id=rental.pk, action=action, params={"rental_id": rental.pk, **params}
    )


def start_params(rental: Rental) -> dict:
    """What the node needs to run the instance: the workload and the renter's key (API.md §14)."""
    return {
        "image": rental.image,
        "env": rental.env,
        "ports": rental.ports,
        "volumes": rental.volumes,
        "jupyter": rental.jupyter,
        "snapshot_id": rental.snapshot_id,
        "ssh_public_key": rental.ssh_public_key,
        "ssh_user": rental.node.ssh_user,
    }


def end_commands(rental: Rental, *, stop_first: bool = False) -> None:
    """An ended rental takes its commands with it (API.md §10): what the node has not reported on is withdrawn,
    and it gets `end`. (A node that left, `rental_end_for_node`, has all its open commands failed instead.)

    `stop_first` (a pay-as-you-go rental that ran out of money) queues `stop` before `end`, unless the node's agent
    said it cannot stop: the agent runs a node's commands in order, one at a time, so its stop hook runs before its
    end hook (API.md §9 "Pay as you go")."""
    node_services.node_commands_withdraw(
        rental_id=rental.pk, reason=f"Withdrawn: rental {rental.pk} ended ({rental.status})."
    )
    if stop_first and NodeCommandAction.STOP not in (rental.node.unsupported_actions or []):
        queue_command(rental, NodeCommandAction.STOP)
    queue_command(rental, NodeCommandAction.END)


@transaction.atomic
def rental_command(*, rental: Rental, action: str, snapshot: bool = False) -> NodeCommand:
    """Queue start/stop/reset for the rented node: 409 if the rental is over, 501 if its agent cannot do it.

    `stop` with `snapshot` asks the node to save the instance; its result's `snapshot_ref` becomes a Snapshot."""
    locked = lock_active(rental.pk)
    if locked is None or is_over(locked, timezone.now()):
        raise RentalNotActive(f"Rental {rental.pk} is not active.")
    if action not in RentalAction.values:
        raise ValueError(action)
    if action in (locked.node.unsupported_actions or []):
        raise ActionNotSupported(f"Node {locked.node_id} does not support {action!r}.")
    if action == RentalAction.START:
        return queue_command(locked, action, **start_params(locked))
    if action == RentalAction.STOP and snapshot:
        return queue_command(locked, action, snapshot=True)
    return queue_command(locked, action)
