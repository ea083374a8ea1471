from django.db import models


class NodeStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    DEREGISTERED = "deregistered", "Deregistered"


class NodeCommandAction(models.TextChoices):
    PROVISION_SSH_KEY = "provision_ssh_key", "Provision SSH key"
    START = "start", "Start"
    STOP = "stop", "Stop"
    RESET = "reset", "Reset"
    END = "end", "End"
    # Fine-tuning (training/, API.md §13): run a job; stop it.
    TRAIN = "train", "Train"
    TRAIN_CANCEL = "train_cancel", "Cancel training"


class NodeCapability(models.TextChoices):
    """What a node offers renters and the marketplace (API.md §14)."""

    INFERENCE = "inference", "Inference"  # serves an OpenAI-compatible backend
    TRAINING = "training", "Training"  # runs fine-tuning jobs
    CONTAINERS = "containers", "Containers"  # runs a renter's container image (the agent's Docker hooks)


class NodeCommandStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # not yet sent to the node
    RUNNING = "running", "Running"  # sent in a heartbeat reply; its outcome not yet reported
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Withdrawn before the node reported it: its rental ended (API.md §10). Never sent again; an outcome the node
    # still reports for it (it had received it) replaces this status.
    CANCELLED = "cancelled", "Cancelled"


# Not yet reported by the node: re-sent in every heartbeat reply.
OPEN_COMMAND_STATUSES = (NodeCommandStatus.PENDING.value, NodeCommandStatus.RUNNING.value)
