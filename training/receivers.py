"""Training's reactions to llm_models' events: llm_models sends signals instead of importing training (STYLE.md §1),
so a node's report on a `train` command updates its job in the heartbeat's transaction."""

from typing import Any

from django.dispatch import receiver

from llm_models.models import NodeCommand
from llm_models.signals import node_command_reported
from training import services


@receiver(node_command_reported, dispatch_uid="training.node_command_reported")
def record_training_report(sender: type[NodeCommand], command: NodeCommand, **kwargs: Any) -> None:
    services.training_job_record_report(command=command)
