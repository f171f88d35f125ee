"""A stand-in for `python -P -m vllm.entrypoints.openai.api_server ...`, run in its place by a
`python` that tests put first on PATH (see `stand_in_vllm` in conftest.py). It reads the options a
rendered app gives vLLM, records how it was started and what it was asked, and then either fails
the way vLLM does or serves the routes the app calls: /health, /v1/completions, /sleep, /wake_up.

Its behaviour comes from its environment (names no credential filter drops):
- FAKE_VLLM_RECORD: a file it appends JSON lines to: first its argv, environment and pid, then
  each request as "METHOD /path".
- FAKE_VLLM_FAILS: a line it prints, after a few lines of log, before exiting with code 1.
- FAKE_VLLM_DELAY: seconds before it listens (default 0).
- FAKE_VLLM_FORGETS_LORA: after /wake_up, every adapter answers like the base model (what vLLM
  issue #53888 reports of sleep level 1).
It stops by itself after LIFETIME seconds, should a test not stop it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIFETIME = 120
_record_lock = threading.Lock()


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def adapters(argv: list[str]) -> list[str]:
    """The model ids of `--lora-modules NAME=FOLDER ...`."""
    if "--lora-modules" not in argv:
        return []
    names = []
    for token in argv[argv.index("--lora-modules") + 1 :]:
        if token.startswith("--"):
            break
        names.append(token.split("=", 1)[0])
    return names


def record(entry: dict) -> None:
    with _record_lock, open(os.environ["FAKE_VLLM_RECORD"], "a") as file:
        file.write(json.dumps(entry) + "\n")


def main(argv: list[str]) -> int:
    record({"argv": argv, "env": dict(os.environ), "pid": os.getpid()})
    print("INFO api_server.py: vLLM API server version 0.0.0 (a stand-in)", flush=True)
    if failure := os.environ.get("FAKE_VLLM_FAILS"):
        print("INFO loading the model", flush=True)
        time.sleep(1)
        print(failure, file=sys.stderr, flush=True)
        return 1
    time.sleep(float(os.environ.get("FAKE_VLLM_DELAY", "0")))
    base = option(argv, "--served-model-name") or option(argv, "--model")
    served = [base, *adapters(argv)]
    state = {"awake": True, "lora": True}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            record({"request": f"GET {self.path}"})
            self.answer(200 if self.path == "/health" else 404, b"")

        def do_POST(self):
            record({"request": f"POST {self.path}"})
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            if self.path == "/sleep?level=1":
                state["awake"] = False
                self.answer(200, b"")
            elif self.path == "/wake_up":
                state["awake"] = True
                state["lora"] = not os.environ.get("FAKE_VLLM_FORGETS_LORA")
                self.answer(200, b"")
            elif self.path == "/v1/completions" and state["awake"] and body["model"] in served:
                model = body["model"] if state["lora"] else base
                text = f" {model} continues {body['prompt']!r}"
                self.answer(200, json.dumps({"choices": [{"text": text}]}).encode())
            else:
                self.answer(404, b'{"error": "not found"}')

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            print("INFO", format % args, flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", int(option(argv, "--port"))), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("INFO Application startup complete.", flush=True)
    time.sleep(LIFETIME)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
