#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs embedq.
#   EMBEDQ_VENV   where the venv lives (default: .venv in the repository)
#   EMBEDQ_HOME   model and build cache (default: ~/.cache/embedq)
#   WITH_PEERS=1  also install the accuracy/benchmark peers (torch 2.13.0 CPU,
#                 sentence-transformers, llama-cpp-python from a cached wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EMBEDQ_VENV:-.venv}
export EMBEDQ_HOME=${EMBEDQ_HOME:-$HOME/.cache/embedq}
mkdir -p "$EMBEDQ_HOME/wheels"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"

if [ "${WITH_PEERS:-0}" = "1" ]; then
  # torch must be exactly 2.13.0 (the CPU wheel on disk); anything else pulls CUDA.
  echo "== installing peers (torch 2.13.0, sentence-transformers, llama-cpp-python)"
  # sentencepiece: llama.cpp's own converter needs it for Gemma (the peer tests run it).
  # protobuf: transformers reads a sentencepiece .model with it (the XLM-R tests build their
  # tokenizer that way) and llama.cpp's converter parses XLM-R's sentencepiece.bpe.model with it.
  # onnxruntime + onnx: the ONNX Runtime peer (bench/onnx_peer.py exports with torch.onnx).
  "$PY" -m pip install -q "torch==2.13.0" "sentence-transformers>=3" "tokenizers>=0.15" sentencepiece protobuf \
    onnxruntime onnx onnxscript
  # llama-cpp-python compiles llama.cpp (minutes on 2 cores): build the wheel once into the cache.
  LLAMA_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
  if ! ls "$EMBEDQ_HOME"/wheels/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "== building llama-cpp-python $LLAMA_VERSION (cached in $EMBEDQ_HOME/wheels)"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip wheel --no-deps -w "$EMBEDQ_HOME/wheels" "llama-cpp-python==$LLAMA_VERSION"
  fi
  "$PY" -m pip install -q --find-links "$EMBEDQ_HOME/wheels" "llama-cpp-python==$LLAMA_VERSION"
fi

echo "== installing embedq"
"$PY" -m pip install -q -e ".[test,postgres,ops]"
echo "== environment ready: $VENV"
