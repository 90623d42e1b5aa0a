#!/usr/bin/env bash
# Starts the local Redis and PostgreSQL the service tests use, if they are not already answering on
# 127.0.0.1, installing Redis from Debian when it is missing. Fails loudly (non-zero exit, one line
# saying what is missing) when a server cannot be had: the tests never skip for a missing service.
# (PostgreSQL with pgvector comes from the pgserver wheel, which the tests start themselves.)
set -uo pipefail

fail() { echo "services: $*" >&2; exit 1; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server from Debian"
  { apt-get update -qq && apt-get install -y -qq redis-server; } >/dev/null 2>&1 \
    || fail "redis-server is not installed and could not be installed with apt-get"
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "== starting redis"
  mkdir -p /tmp/embedq-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/embedq-redis \
    --logfile /tmp/embedq-redis/redis.log || fail "redis-server did not start (see /tmp/embedq-redis/redis.log)"
  for _ in $(seq 1 100); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || fail "redis on 127.0.0.1:6379 does not answer after 10 s"
fi
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "== starting postgresql"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start \
      || echo "services: the system PostgreSQL did not start; the tests use pgserver's own" >&2
  fi
fi
echo "== services: redis $(redis-cli -h 127.0.0.1 info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p') on 127.0.0.1:6379"
