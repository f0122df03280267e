"""Logs through structlog: the service's own records and those of Django, Celery and every other
library come out alike, as JSON lines (LOG_FORMAT=json, for a log shipper) or readable lines
(console). A request's lines carry its request_id (django-structlog's RequestMiddleware binds it).

No line carries a query string or an e-mail address: a data owner's address can appear in either
(a link with ?email=, an exception's message), and logs are kept and shipped where the audit log's
pseudonyms do not reach. Names cannot be recognised in text: nothing logs a form's fields.
"""

import re
import sys

import structlog

FORMATS = ("console", "json")
EMAIL_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def without_personal_data(logger, method_name: str, event_dict: dict) -> dict:
    if isinstance(event_dict.get("request"), str):  # django-structlog's "GET /path?query"
        event_dict["request"] = event_dict["request"].split("?", 1)[0]
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = EMAIL_ADDRESS.sub("[e-mail]", value)
    return event_dict


# What every record goes through before it is rendered, structlog's and the standard library's
# alike; exceptions become text first, so that their messages are cleaned too.
PREPARE = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
    without_personal_data,
]


def renderer(log_format: str):
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, got {log_format!r}")
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def logging_settings(log_format: str, level: str) -> dict:
    """Django's LOGGING: the root logger writes every record to stderr in `log_format`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": PREPARE,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer(log_format)],
        }},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
    }


def configure_structlog() -> None:
    """structlog's loggers hand their events to the standard library's handlers (the formatter above)."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.PositionalArgumentsFormatter(), *PREPARE,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
