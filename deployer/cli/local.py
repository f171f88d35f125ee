"""The commands that run on this machine: serve --local (the deployment's own vLLM command)
and smoke (checks any running endpoint, local or on Modal)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from deployer.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    UsageError,
    folder_options,
    interpreter,
    select,
)
from deployer.core.diagnostics import printable
from deployer.core.paths import display_path


def register(commands) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[folder_options()],
        help="run a deployment's vLLM server on this machine",
        description="Render NAME, then run the very vLLM command its Modal container would run, on "
        "this machine (vLLM on a local GPU, or vLLM's CPU build). Prints the OpenAI "
        "base URL and model ids when ready; Ctrl-C stops vLLM.",
        epilog="examples:\n  deployer serve chess-puzzle --local\n  "
        "DEPLOYER_VLLM_PYTHON=~/vllm/bin/python deployer serve tiny --local --port 8123 "
        "--logs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("name", metavar="NAME", help="deployment (app) name")
    serve.add_argument(
        "--local",
        action="store_true",
        help="run on this machine (required: on Modal, use `modal deploy build/NAME/app.py`)",
    )
    serve.add_argument("--port", type=_port, default=8000, help="port on 127.0.0.1 (default: 8000)")
    serve.add_argument(
        "--python",
        default=None,
        metavar="PATH",
        help="interpreter that has vLLM installed (default: $DEPLOYER_VLLM_PYTHON, else this one)",
    )
    serve.add_argument(
        "--logs",
        action="store_true",
        help="stream vLLM's log here instead of into build/NAME/vllm.log",
    )
    serve.add_argument(
        "--startup-timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="seconds to wait for /health (default: the deployment's scaling.startup_timeout)",
    )

    serve.set_defaults(run=cmd_serve)

    smoke = commands.add_parser(
        "smoke",
        parents=[folder_options()],
        help="check a running endpoint: health, models, one chat per model",
        description="Check a running OpenAI-compatible endpoint. TARGET is a deployment name (its "
        "URL from a running `deployer serve --local`, or --url) or a URL. Checks "
        "/health (waiting, with progress), that /v1/models lists the base and every "
        "adapter with the base as parent, one chat completion per model (matching "
        "smoke.expect patterns), and that an undeclared model is refused. Exit 0 only "
        "if all pass.",
        epilog="examples:\n  deployer smoke chess-puzzle --url "
        "https://me--chess-puzzle-serve.modal.run\n  deployer smoke "
        "http://127.0.0.1:8000/v1 --format json\n\ncredentials (never printed): the API "
        "key from $VLLM_API_KEY (or --api-key-env VAR);\nModal proxy auth from "
        "$MODAL_PROXY_KEY and $MODAL_PROXY_SECRET.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    smoke.add_argument("target", metavar="TARGET", help="deployment name or URL")
    smoke.add_argument("--url", default=None, help="the deployment's URL, when TARGET is a name")
    smoke.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="seconds to wait for /health (default: the deployment's startup timeout, else 300)",
    )
    smoke.add_argument(
        "--api-key-env",
        default="VLLM_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: VLLM_API_KEY)",
    )
    smoke.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    smoke.set_defaults(run=cmd_smoke)


def _port(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def _warn(message: str) -> None:
    print(f"deployer: warning: {message}", file=sys.stderr, flush=True)


def cmd_serve(args) -> int:
    import shlex
    import time

    from deployer.local.server import (
        LocalError,
        LocalServer,
        NotReady,
        installed_vllm,
        local_command,
        prepare_dynamic_adapters,
        version_warning,
        without_auth_guard,
        without_sleep_mode,
        write_state,
    )
    from deployer.local.watch import FollowYaml
    from deployer.render.app import render
    from deployer.render.output import LOG_FILE, STATE_FILE, write
    from deployer.render.templates import project_templates

    if not args.local:
        raise UsageError(
            "only --local is supported here; to serve on Modal, run "
            "`modal deploy build/NAME/app.py`"
        )
    _, selected, code = select(args, [args.name], alone=True)
    if selected is None:
        return code
    (deployment,) = selected
    templates = project_templates(args.deployments)
    app = render(deployment, args.out, templates)
    write(app)
    python = interpreter(args.python or os.environ.get("DEPLOYER_VLLM_PYTHON") or sys.executable)
    found = installed_vllm(python)
    if warning := version_warning(deployment.vllm.version, python, found):
        _warn(warning)
    try:
        local = local_command(app.path, python, args.port)
    except LocalError as exc:
        print(f"deployer serve: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    local, keyless = without_auth_guard(local, os.environ)
    if keyless:
        _warn(keyless)
    command, note = without_sleep_mode(local.argv, found)
    if note:
        _warn(note)

    folder = app.path.parent
    dynamic = None
    if local.with_dynamic_adapters is not None:
        try:
            dynamic = prepare_dynamic_adapters(local, folder, args.port)
        except LocalError as exc:
            print(f"deployer serve: {exc}", file=sys.stderr)
            return EXIT_PROBLEMS
    server = LocalServer(
        command,
        folder / LOG_FILE,
        local.runtime,
        stream_logs=args.logs,
        environment=dynamic.environment_in if dynamic else local.environment_in,
    )
    print(f"starting vLLM: {shlex.join(command)}", file=sys.stderr, flush=True)
    if not args.logs:
        print(f"vLLM log: {display_path(folder / LOG_FILE)}", file=sys.stderr, flush=True)
    if dynamic:
        print(
            f"adapter folder: {display_path(dynamic.folder)} (adapters staged there are "
            "loaded on their first request)",
            file=sys.stderr,
            flush=True,
        )

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    url = f"http://127.0.0.1:{args.port}"
    try:
        server.start()
        started = time.monotonic()
        timeout = args.startup_timeout or deployment.scaling.startup_timeout
        try:
            # The container's own wait: at once if vLLM exits, else up to the timeout.
            server.wait_until_healthy(
                args.port, timeout, lambda m: print(printable(m), file=sys.stderr, flush=True)
            )
        except NotReady as exc:
            print(
                f"deployer serve: vLLM did not become ready: {printable(exc.detail)}",
                file=sys.stderr,
            )
            if tail := server.log_tail():
                print(f"last lines of {display_path(server.log_path)}:\n{tail}", file=sys.stderr)
            return EXIT_PROBLEMS
        model_ids = deployment.model_ids
        write_state(folder, url, server.process.pid, model_ids, dynamic and dynamic.model)
        seconds = time.monotonic() - started
        print(f"vLLM is ready at {url}/v1 (after {seconds:.0f} s)", flush=True)
        print(f"models: {', '.join(model_ids)}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        follow = FollowYaml(
            deployment,
            dynamic,
            args.out,
            templates,
            url,
            server.process.pid,
            lambda line: print(f"deployer serve: {printable(line)}", file=sys.stderr, flush=True),
        )
        if dynamic:
            print(
                f"following {deployment.file}: adapters added there are served with no restart",
                flush=True,
            )
        while server.alive():
            time.sleep(0.5)
            follow.poll()
        print(f"deployer serve: vLLM exited with code {server.process.returncode}", file=sys.stderr)
        if tail := server.log_tail():
            print(f"last lines of {display_path(server.log_path)}:\n{tail}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        print("stopping vLLM…", file=sys.stderr, flush=True)
        return EXIT_OK
    except LocalError as exc:
        print(f"deployer serve: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        server.stop()
        (folder / STATE_FILE).unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)


def cmd_smoke(args) -> int:
    from deployer.local.server import read_state
    from deployer.local.smoke import Connection, SmokeSpec, credentials, normalise_url, redact, run

    timeout = args.timeout
    headers: list[tuple[str, str]] = []
    if args.target.startswith(("http://", "https://")):
        url, spec = args.target, SmokeSpec.discover()
        if key := os.environ.get(args.api_key_env):
            headers.append(("Authorization", f"Bearer {key}"))
    else:
        _, selected, code = select(args, [args.target])
        if selected is None:
            return code
        (deployment,) = selected
        spec = SmokeSpec.for_deployment(deployment)
        state = read_state(args.out / deployment.name)
        if (
            state is not None
            and args.url
            and normalise_url(args.url) != normalise_url(state["url"])
        ):
            state = (
                None  # --url names another endpoint than the local server: its credentials apply
            )
        url = args.url or (state or {}).get("url")
        if not url:
            raise UsageError(
                f"no known URL for {deployment.name!r}: pass --url, or "
                f"start it with `deployer serve {deployment.name} --local`"
            )
        found, problem = credentials(
            deployment, os.environ, args.api_key_env, local=state is not None
        )
        if problem:
            raise UsageError(problem)
        headers += found
        timeout = timeout or deployment.scaling.startup_timeout
    conn = Connection(normalise_url(url), tuple(headers))
    results = run(conn, spec, timeout or 300, lambda m: print(m, file=sys.stderr, flush=True))
    passed = sum(r.ok for r in results)
    if args.format == "json":
        import json
        from dataclasses import asdict

        print(
            json.dumps(
                {
                    "url": redact(conn.base_url),
                    "ok": passed == len(results),
                    "checks": [asdict(r) for r in results],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for r in results:
            print(
                f"{'ok' if r.ok else 'FAIL':>4}  {printable(r.name, 80):<32} "
                f"{r.seconds:6.1f} s  {printable(r.detail, 400)}"
            )
        print(f"{passed} of {len(results)} checks passed against {redact(conn.base_url)}")
    return EXIT_OK if passed == len(results) else EXIT_PROBLEMS
