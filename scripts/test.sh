#!/usr/bin/env bash
# The test command: prepares services, peers and models, runs the C++ tests
# under AddressSanitizer/UBSan, then the Python suite. Safe to re-run; heavy
# things (llama-cpp-python wheel, models, conversions) are cached in EMBEDQ_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
export EMBEDQ_HOME=${EMBEDQ_HOME:-$HOME/.cache/embedq}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
VENV=${EMBEDQ_VENV:-.venv}

bash scripts/services.sh
WITH_PEERS=1 bash scripts/setup_env.sh
PY="$VENV/bin/python"

echo "== C++ tests under AddressSanitizer + UBSan"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBEDQ_SANITIZE=ON -DEMBEDQ_BUILD_TESTS=ON \
  -DEMBEDQ_BUILD_PYTHON=OFF >/dev/null
cmake --build build/asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build/asan --output-on-failure

# tests/service/test_deploy.py validates docker/compose.yaml with `docker compose config`
# (Compose v2; no engine needed).
bash scripts/compose_cli.sh

echo "== models"
"$PY" -m embedq models pull all-MiniLM-L6-v2 --type f32
if [ "${EMBEDQ_SKIP_GEMMA:-0}" != "1" ]; then
  "$PY" -m embedq models pull embeddinggemma-300m --type f32
fi

echo "== pytest"
"$PY" -m pytest -q -rs -p no:cacheprovider "$@"
