#!/usr/bin/env bash
# The main job end to end on the embedded default (no servers): installs
# embedq into a venv, pulls all-MiniLM-L6-v2, starts a worker on a SQLite
# broker and database, enqueues texts with embed.delay, prints the results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec "${EMBEDQ_VENV:-.venv}/bin/python" scripts/demo.py "$@"
