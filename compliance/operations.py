"""Reads for operators: work stuck on a lost worker, work that failed, requests near or past their
statutory deadline, and what waits in the broker's queues. The metrics (compliance.metrics) and
`manage.py work_report` show them; neither changes anything (the sweep re-queues stale claims)."""

from collections import Counter
from datetime import timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum
from kombu.transport.redis import Channel

from audits.models import AuditRun, AuditStatus
from compliance.models import FINAL_STATUSES, RemovalRequest
from unlearning.models import FilterCount, JobStatus, ModelRegistration, UnlearningJob
from unlearning.selectors import stale_claim, stale_job_claim

# Upper bounds (seconds) of the duration histograms: minutes for a tabular deletion, hours for a
# language model's unlearning and audits.
DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)


def counts_by_status(queryset: QuerySet, statuses) -> dict[str, int]:
    """Rows per status, every status named (0 where none)."""
    counted = dict(queryset.order_by().values_list("status").annotate(rows=Count("pk")))
    return {status: counted.get(status, 0) for status in statuses}


def open_requests() -> QuerySet[RemovalRequest]:
    return RemovalRequest.objects.exclude(status__in=FINAL_STATUSES)


def overdue_requests(now) -> QuerySet[RemovalRequest]:
    return open_requests().filter(due_at__lt=now).order_by("due_at")


def requests_due_soon(now) -> QuerySet[RemovalRequest]:
    """Open requests due within DEADLINE_WARNING_DAYS (and not yet overdue)."""
    return requests_due_within(now, settings.DEADLINE_WARNING_DAYS).filter(due_at__gte=now)


def requests_due_within(now, days: int) -> QuerySet[RemovalRequest]:
    """Open requests due within `days`, overdue ones included."""
    return open_requests().filter(due_at__lt=now + timedelta(days=days)).order_by("due_at")


def stale_claims(now) -> dict[str, QuerySet]:
    """Per kind of work, the claims whose worker is gone (unlearning.selectors.stale_claim)."""
    return {
        "unlearning_job": UnlearningJob.objects.filter(stale_job_claim(now)).order_by("pk"),
        "audit_run": AuditRun.objects.filter(stale_claim(now)).order_by("pk"),
        "model_registration": ModelRegistration.objects.filter(stale_claim(now)).order_by("pk"),
    }


def failures_since(since) -> dict[str, QuerySet]:
    return {
        "unlearning_job": UnlearningJob.objects.filter(status=JobStatus.FAILED, finished_at__gte=since).order_by("pk"),
        "audit_run": AuditRun.objects.filter(status=AuditStatus.FAILED, finished_at__gte=since).order_by("pk"),
    }


def duration_histograms(queryset: QuerySet) -> dict[str, dict]:
    """Per final status, how long finished work took (started_at to finished_at): how many took
    at most each of DURATION_BUCKETS, how many in all, and their total seconds."""
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    within = {f"within_{bound}": Count("pk", filter=Q(took__lte=timedelta(seconds=bound))) for bound in DURATION_BUCKETS}
    rows = (queryset.exclude(started_at=None).exclude(finished_at=None).annotate(took=took).order_by()
            .values("status").annotate(count=Count("pk"), total=Sum("took"), **within))
    return {row["status"]: {"buckets": [row[f"within_{bound}"] for bound in DURATION_BUCKETS], "count": row["count"],
                            "seconds": row["total"].total_seconds()} for row in rows}


def finished_job_durations() -> dict[str, dict]:
    return duration_histograms(UnlearningJob.objects.filter(status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED)))


def finished_audit_durations() -> dict[str, dict]:
    return duration_histograms(AuditRun.objects.filter(status__in=(AuditStatus.DONE, AuditStatus.FAILED)))


def runtime_filter_actions() -> list[dict]:
    """What the runtime filters did on served models, all days added up, per model, filter,
    action and reason."""
    return list(FilterCount.objects.order_by().values("filter", "action", "reason", model=F("version__asset__name"))
                .annotate(times=Sum("count")).order_by("model", "filter", "action", "reason"))


def celery_queues() -> list[str]:
    """The queues tasks are sent to: the default one and those of the routes (cpu, gpu)."""
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *(route["queue"] for route in settings.CELERY_TASK_ROUTES.values())})


def broker_is_redis() -> bool:
    """Tasks go to a Redis broker (not run in-process, the embedded default)."""
    return not settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://"))


def broker_is_files() -> bool:
    """Tasks go through kombu's filesystem transport (`make serve`: files under VAR_DIR/broker)."""
    return not settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL.startswith("filesystem://")


def queues_are_countable() -> bool:
    """Messages waiting in the broker can be counted (queue_depths): Redis lists, or files."""
    return broker_is_redis() or broker_is_files()


def broker_client() -> redis.Redis:
    timeout = settings.BROKER_TIMEOUT_SECONDS
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def queue_keys(queue: str) -> list[str]:
    """kombu's Redis transport keeps a queue as one list per priority step, the plain name for priority 0."""
    return [f"{queue}{Channel.sep}{step}" if step else queue for step in Channel.priority_steps]


def queue_depths() -> dict[str, int]:
    """Messages waiting per Celery queue; redis.RedisError when the broker does not answer. The
    filesystem transport keeps each message as a file named `<ms>_<uuid>.<queue>.msg`."""
    if broker_is_files():
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        waiting = Counter(path.name.partition(".")[2].removesuffix(".msg") for path in folder.glob("*.msg"))
        return {queue: waiting[queue] for queue in celery_queues()}
    with broker_client() as client:
        return {queue: sum(client.llen(key) for key in queue_keys(queue)) for queue in celery_queues()}
