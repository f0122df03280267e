"""/metrics for Prometheus: django-prometheus' request metrics of the web process, and the state of
the work, read from the database and the broker at each scrape (compliance.operations), so every
web process answers the same. Counts only: no reference, e-mail or name is ever a label.

Not public: a scrape carries `Authorization: Bearer <METRICS_TOKEN>`, or, while no token is set,
comes from this machine (loopback, and not through a proxy, whose clients would all look local)."""

import hmac
import ipaddress
import logging
import os

import prometheus_client
import redis
from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from audits.models import AuditRun, AuditStatus
from compliance import operations
from compliance.models import RemovalRequest, RequestStatus
from unlearning.models import JobStatus, UnlearningJob

logger = logging.getLogger(__name__)


def by_status(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, count in counts.items():
        family.add_metric([status], count)
    return family


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def durations(name: str, documentation: str, histograms: dict[str, dict]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["status"])
    for status, histogram in sorted(histograms.items()):
        buckets = [(str(bound), count) for bound, count in zip(operations.DURATION_BUCKETS, histogram["buckets"])]
        family.add_metric([status], buckets + [("+Inf", histogram["count"])], histogram["seconds"])
    return family


class WorkCollector:
    """The requests, jobs, audits, filters and queues, as they stand at the scrape."""

    def collect(self):
        now = timezone.now()
        yield by_status("compliance_removal_requests", "Removal requests by status.",
                        operations.counts_by_status(RemovalRequest.objects, RequestStatus.values))
        yield gauge("compliance_removal_requests_due_soon",
                    f"Open requests due within DEADLINE_WARNING_DAYS ({settings.DEADLINE_WARNING_DAYS}).",
                    operations.requests_due_soon(now).count())
        yield gauge("compliance_removal_requests_overdue", "Open requests past their statutory deadline.",
                    operations.overdue_requests(now).count())
        yield by_status("compliance_unlearning_jobs", "Unlearning jobs by status.",
                        operations.counts_by_status(UnlearningJob.objects, JobStatus.values))
        yield by_status("compliance_audit_runs", "Audit runs by status.",
                        operations.counts_by_status(AuditRun.objects, AuditStatus.values))
        yield durations("compliance_unlearning_job_duration_seconds", "How long finished unlearning jobs took.",
                        operations.finished_job_durations())
        yield durations("compliance_audit_run_duration_seconds", "How long finished audit runs took.",
                        operations.finished_audit_durations())
        stale = GaugeMetricFamily("compliance_stale_claims", "Running work whose worker stopped sending heartbeats.",
                                  labels=["kind"])
        for kind, claims in operations.stale_claims(now).items():
            stale.add_metric([kind], claims.count())
        yield stale
        yield self.filter_actions()
        if operations.queues_are_countable():
            yield from self.queue_depths()

    @staticmethod
    def filter_actions() -> CounterMetricFamily:
        family = CounterMetricFamily("compliance_runtime_filter_actions",
                                     "Times a runtime filter acted on a served model (refused, redacted, flagged...).",
                                     labels=["model", "filter", "action", "reason"])
        for row in operations.runtime_filter_actions():
            family.add_metric([row["model"], row["filter"], row["action"], row["reason"]], row["times"])
        return family

    @staticmethod
    def queue_depths():
        try:
            depths = operations.queue_depths()
        except redis.RedisError:
            # The broker's absence shows on /ready/; the scrape still answers with the rest.
            logger.warning("the broker did not answer: queue depths left out of this scrape")
            return
        family = GaugeMetricFamily("compliance_celery_queue_messages", "Task messages waiting in a Celery queue.",
                                   labels=["queue"])
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


WORK = prometheus_client.CollectorRegistry()
WORK.register(WorkCollector())


def process_registry() -> prometheus_client.CollectorRegistry:
    """This process's metrics, or those of every gunicorn worker when PROMETHEUS_MULTIPROC_DIR names
    the folder they share (prometheus_client's multiprocess mode)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return prometheus_client.REGISTRY
    registry = prometheus_client.CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def scrape_allowed(request) -> bool:
    if settings.METRICS_TOKEN:
        expected = f"Bearer {settings.METRICS_TOKEN}"
        return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected.encode())
    if "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def scrape(request):
    if not scrape_allowed(request):
        return HttpResponseForbidden("/metrics needs the metrics token (Authorization: Bearer ...)\n",
                                     content_type="text/plain")
    body = prometheus_client.generate_latest(process_registry()) + prometheus_client.generate_latest(WORK)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
