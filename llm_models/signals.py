"""Signals other apps listen to, so llm_models never imports them (STYLE.md §1: imports run one way).

`node_deregistered` is sent inside the deregistering transaction, once per node that left (rentals ends the
node's active rentals with a refund of unused time, in the same transaction).
"""

from django.dispatch import Signal

node_deregistered = Signal()  # kwargs: node_id: int, now: datetime
# Sent inside the heartbeat's transaction for each open command the node reported on (status, result and outcome
# already saved): rentals shows the reported access and records snapshots.
node_command_reported = Signal()  # kwargs: command: NodeCommand
