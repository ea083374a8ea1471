"""llm_models' reactions to clients' events: clients sends signals instead of importing llm_models (STYLE.md §1:
imports run one way, llm_models -> clients), so closing an account deregisters its nodes in the same transaction."""

from typing import Any

from django.dispatch import receiver

from clients.models import Client
from clients.signals import client_deactivated
from llm_models import services


@receiver(client_deactivated, dispatch_uid="llm_models.client_deactivated")
def deregister_nodes_of_deactivated_client(sender: type[Client], client: Client, **kwargs: Any) -> None:
    services.node_deregister_all_of_owner(owner=client)
