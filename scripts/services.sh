#!/usr/bin/env bash
# Starts the local Redis and PostgreSQL the service tests use, if they are not
# already answering on 127.0.0.1. (PostgreSQL with pgvector comes from the
# pgserver wheel, which the tests start themselves.)
set -uo pipefail
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "== starting redis"
  mkdir -p /tmp/embedq-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/embedq-redis \
    --logfile /tmp/embedq-redis/redis.log || true
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "== starting postgresql"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is not installed; installing it from Debian"
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || echo "warning: could not install redis-server"
  exec bash "$0"
fi
exit 0
