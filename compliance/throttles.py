"""Limits on what one client address may ask of the public pages (submitting requests, sending and
checking codes, the verify page, the admin login), counted in fixed windows in the cache: Redis,
shared by every web process, when one is configured. Limits per e-mail address and per request are
the services' (counted in the database); these stop one client from spreading its attempts over
many addresses and requests.

Counters are keyed by a keyed hash of the address, so the cache holds no client address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from compliance.errors import TooManyRequests


@dataclass(frozen=True)
class Limit:
    name: str
    setting: str  # the setting that holds how many per window (0: no limit)
    seconds: int = 3600

    @property
    def count(self) -> int:
        return getattr(settings, self.setting)


SUBMISSIONS = Limit("submit", "PORTAL_SUBMISSIONS_PER_CLIENT_PER_HOUR")
CODE_CHECKS = Limit("check", "CODE_CHECKS_PER_CLIENT_PER_HOUR")
CODE_SENDS = Limit("send", "CODE_SENDS_PER_CLIENT_PER_HOUR")
ADMIN_LOGINS = Limit("admin", "ADMIN_LOGINS_PER_CLIENT_PER_HOUR")
CERTIFICATE_CHECKS = Limit("verify", "CERTIFICATE_CHECKS_PER_CLIENT_PER_HOUR")


def client_address(http_request) -> str:
    """REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies the address the outermost one saw."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in http_request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return http_request.META.get("REMOTE_ADDR", "")


def spend(limit: Limit, http_request) -> None:
    """Count one use of `limit` by this request's client; TooManyRequests once the window's are spent."""
    if not limit.count:
        return
    window = int(time.time()) // limit.seconds
    digest = hmac.new(settings.SECRET_KEY.encode(), client_address(http_request).encode(), hashlib.sha256).hexdigest()
    key = f"throttle:{limit.name}:{window}:{digest[:32]}"
    cache.add(key, 0, timeout=limit.seconds + 60)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr: this is the window's first use
        cache.set(key, 1, timeout=limit.seconds + 60)
        used = 1
    if used > limit.count:
        retry_after = limit.seconds - int(time.time()) % limit.seconds
        raise TooManyRequests(f"too many attempts from your network: try again in {max(1, retry_after // 60)} minutes",
                              retry_after)
