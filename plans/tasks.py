"""Celery entry points of plans: thin, safe to run twice."""

from celery import shared_task

from plans import services


@shared_task(name="plans.tasks.plans_renew_due", ignore_result=True)
def plans_renew_due() -> dict[str, int]:
    return services.subscription_renew_due()
