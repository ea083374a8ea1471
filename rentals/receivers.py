"""Rentals' reactions to other apps' events. Those apps send signals instead of importing rentals (STYLE.md §1:
imports run one way, rentals -> llm_models -> clients), so a node leaving ends its rentals in the same transaction."""

from datetime import datetime
from typing import Any

from django.dispatch import receiver

from clients.models import Client
from clients.signals import provider_revoked
from llm_models.models import Node, NodeCommand
from llm_models.signals import node_command_reported, node_deregistered
from rentals import services


@receiver(node_deregistered, dispatch_uid="rentals.node_deregistered")
def end_rentals_of_deregistered_node(sender: type[Node], node_id: int, now: datetime, **kwargs: Any) -> None:
    services.rental_end_for_node(node_id=node_id, now=now)


@receiver(provider_revoked, dispatch_uid="rentals.provider_revoked")
def end_rentals_of_revoked_provider(sender: type[Client], client_id: int, **kwargs: Any) -> None:
    services.rental_end_for_owner(owner_id=client_id)


@receiver(node_command_reported, dispatch_uid="rentals.node_command_reported")
def record_instance_outcome(sender: type[NodeCommand], command: NodeCommand, **kwargs: Any) -> None:
    services.rental_record_outcome(command=command)
