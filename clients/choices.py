from django.db import models


class ClientRole(models.TextChoices):
    USER = "user", "User"
    GPU_PROVIDER = "gpu_provider", "GPU provider"
    ADMIN = "admin", "Admin"
