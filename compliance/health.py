"""Liveness (/health/: the process answers, nothing else is asked) and readiness (/ready/: what a
request needs answers) for load balancers, orchestrators and compose healthchecks, on
django-health-check. Readiness checks the database, the broker (a Redis PING, only when tasks go to
workers), the model store and the certificate signing identity; it answers 503 while one fails,
as HTML, JSON (?format=json or Accept: application/json) or text. Public: the checks here name no
host, path or secret in their failures (the package's database check gives the driver's first
clause, which can name the database host)."""

import dataclasses
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView
from redis.asyncio import Redis as AsyncRedis

from audits.certificates import signing_identity
from compliance.operations import broker_is_redis


def async_broker_client() -> AsyncRedis:
    timeout = settings.BROKER_TIMEOUT_SECONDS
    return AsyncRedis.from_url(settings.CELERY_BROKER_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


class Broker(Redis):
    """Celery's broker answers a PING within BROKER_TIMEOUT_SECONDS."""

    # The package's own repr and labels name the broker's host: these pages are public.
    def __repr__(self):
        return "Broker(redis)"

    @property
    def labels(self) -> dict[str, str]:
        return {"check": "Broker"}


def can_write(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


@dataclasses.dataclass
class ModelStore(HealthCheck):
    """MODEL_STORE_DIR exists and can be written (an unmounted share is not created here)."""

    def run(self):
        if not can_write(Path(settings.MODEL_STORE_DIR)):
            raise ServiceUnavailable("the model store folder is missing or cannot be written")


def signing_identity_made() -> bool:
    """Whether signing_identity() would load an identity rather than create one (it makes a local CA
    and signer on first use: a probe must not)."""
    configured = settings.SIGNING_KEY_FILE and settings.SIGNING_CERT_FILE
    return bool(configured) or (Path(settings.SIGNING_DIR) / "signer.pem").exists()


def load_signing_identity() -> None:
    """Read the signer's certificate, the CA's and the private key; the key must be the certificate's."""
    identity = signing_identity()
    certificate = identity.certificate()
    x509.load_pem_x509_certificate(identity.ca_file.read_bytes())
    key = serialization.load_pem_private_key(identity.key_file.read_bytes(), identity.passphrase)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise ValueError("the signing key is not the key of the signing certificate")


@dataclasses.dataclass
class CertificateSigner(HealthCheck):
    """The identity that signs certificates loads. Before the first certificate of the embedded
    default there is none yet: ready when SIGNING_DIR can take the one made then."""

    def run(self):
        if not signing_identity_made():
            folder = Path(settings.SIGNING_DIR)
            nearest = next(path for path in (folder, *folder.parents) if path.exists())
            if not can_write(nearest):
                raise ServiceUnavailable("no signing identity yet, and none can be made in SIGNING_DIR")
            return
        try:
            load_signing_identity()
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            raise ServiceUnavailable(f"the signing identity does not load ({type(error).__name__})") from error


class Readiness(HealthCheckView):
    def get_checks(self):
        yield Database()
        if broker_is_redis():
            yield Broker(client_factory=async_broker_client)
        yield ModelStore()
        yield CertificateSigner()

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:  # the package's answer when a check fails
            response.status_code = 503  # what load balancers take for "not ready, try elsewhere"
        return response


liveness = HealthCheckView.as_view(checks=())
readiness = Readiness.as_view()
