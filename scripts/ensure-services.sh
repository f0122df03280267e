#!/usr/bin/env bash
# Make sure what the tests talk to is installed and running: PostgreSQL (127.0.0.1:5432, trust
# auth), Redis (127.0.0.1:6379), poppler's pdfsig and NSS's certutil (independent signature
# checks), Debian's Chromium with its chromedriver (the browser tests), and where the docker client
# has no compose plugin, Debian's docker-compose for the compose specification's schema (its
# python3-compose ships it; tests/test_deployment.py validates docker/compose.yaml against it).
set -euo pipefail

missing=()
command -v pdfsig >/dev/null || missing+=(poppler-utils)
command -v certutil >/dev/null || missing+=(libnss3-tools)
command -v redis-server >/dev/null || missing+=(redis-server redis-tools)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ! docker compose version >/dev/null 2>&1 && [ ! -f /usr/lib/python3/dist-packages/compose/config/compose_spec.json ]; then
  missing+=(docker-compose)
fi
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi

for _ in $(seq 30); do
  if pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "PostgreSQL or Redis did not come up on 127.0.0.1" >&2
exit 1
