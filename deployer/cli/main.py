"""The `deployer` command: parses arguments, runs pipeline steps, reports, sets the exit code.

Exit codes: 0 success (warnings allowed unless --strict), 1 problems found, 2 usage error.
Heavy libraries are imported inside the commands that need them, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from deployer.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    display_path,
    failed,
    report,
    select,
)
from deployer.core.budget import parse_budget
from deployer.core.diagnostics import (
    printable,
    render_json,
)

DESCRIPTION = """\
Declarative, checked serving of LoRA adapters with vLLM on Modal.

Deployments are YAML files in deployments/ (deployments/_defaults.yaml is merged under each).
`deployer validate` checks them; `deployer render` writes one Modal app per deployment to
build/<name>/app.py, which `modal deploy` takes as it is."""

EXAMPLES = """\
examples:
  deployer validate                         check every file in deployments/
  deployer validate deployments/chess-puzzle.yaml --format github
  deployer render                           write build/<name>/app.py for every deployment
  deployer render chess-puzzle --out /tmp/apps
  deployer render --check                   fail if build/ is not what render would write
  deployer serve chess-puzzle --local       run its exact vLLM command on this machine
  deployer smoke chess-puzzle               health, models and one chat per model
  deployer fit chess-puzzle                 GPU memory breakdown, cost, cheapest GPU that fits
  deployer plan                             what apply would change on Modal, and why
  deployer apply --yes                      deploy what changed, smoke-test, roll back failures
  deployer status                           desired against deployed, URLs, cost per hour
  deployer endpoints                        OpenAI base URL, model ids and a client snippet
  deployer schema > deployment.schema.json  the JSON Schema, for editors and other tools
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployer",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    report = argparse.ArgumentParser(add_help=False)
    report.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="how to print findings: text (default), json, or github (workflow annotations "
        "shown inline on pull requests)",
    )
    report.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")

    folders = argparse.ArgumentParser(add_help=False)
    folders.add_argument(
        "--deployments",
        type=Path,
        default=Path("deployments"),
        metavar="DIR",
        help="folder of deployment files (default: deployments/)",
    )
    folders.add_argument(
        "--out",
        type=Path,
        default=Path("build"),
        metavar="DIR",
        help="folder of rendered apps, one subfolder per deployment (default: build/)",
    )

    validate = commands.add_parser(
        "validate",
        parents=[report],
        help="check deployment files against the schema and beyond",
        description="Check deployment files: YAML syntax, the schema, and semantic checks. Reports "
        "every problem in every file at once.",
        epilog="examples:\n  deployer validate\n  deployer validate deployments/ "
        "other/one.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders (default: deployments/)",
    )
    validate.add_argument(
        "--schema-only",
        action="store_true",
        help="check YAML and the JSON Schema only: no model or adapter reading, no semantic checks",
    )

    render = commands.add_parser(
        "render",
        parents=[report, folders],
        help="write one Modal app per deployment",
        description="Validate, then render each deployment into <out>/<name>/app.py. Writes nothing "
        "if any deployment has errors.",
        epilog="examples:\n  deployer render\n  deployer render chess-puzzle --out /tmp/apps\n "
        " deployer render --check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument(
        "names", nargs="*", metavar="NAME", help="deployment (app) names to render (default: all)"
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any rendered file would change",
    )

    serve = commands.add_parser(
        "serve",
        parents=[folders],
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

    smoke = commands.add_parser(
        "smoke",
        parents=[folders],
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

    fit = commands.add_parser(
        "fit",
        parents=[folders],
        help="GPU memory breakdown and cost of a deployment",
        description="Show how a deployment's model, LoRA buffers and context fit its GPU (the "
        "arithmetic of vLLM's start-up check), its cost per warm hour, and the cheapest "
        "GPUs that fit. With one NAME, the breakdown; otherwise a table of all. Needs "
        "the base model's config.json (a local model, the Hugging Face cache, or the "
        "Hub). Exit 1 if any does not fit or could not be sized.",
        epilog="examples:\n  deployer fit chess-puzzle\n  deployer fit\n  deployer fit "
        "chess-puzzle --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="one deployment for its breakdown; several, or none for all, for a table",
    )
    fit.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )

    from deployer.cli.remote import add_commands

    add_commands(commands, folders)
    commands.add_parser(
        "schema",
        help="print the deployment JSON Schema",
        description="Print the JSON Schema (draft 2020-12) that deployment files follow.",
    )
    return parser


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


def _version() -> str:
    from deployer import __version__

    return __version__


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A CI job's timeout or cancel sends SIGTERM: stop as on Ctrl-C, so temporary folders (a git
    # ref's export, gigabytes perhaps) are removed rather than left behind.
    previous = (
        signal.signal(signal.SIGTERM, _interrupt)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        from deployer.cli.remote import COMMANDS

        local = {
            "validate": cmd_validate,
            "render": cmd_render,
            "serve": cmd_serve,
            "smoke": cmd_smoke,
            "fit": cmd_fit,
            "schema": cmd_schema,
        }
        with parse_budget():  # one for the whole command: a plan reads several commits
            return {**local, **COMMANDS}[args.command](args)
    except KeyboardInterrupt:
        print("deployer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        print(
            f"deployer {args.command}: out of memory; the input is larger than the "
            "deployer reads (run with DEPLOYER_DEBUG=1 to see where)",
            file=sys.stderr,
        )
        if os.environ.get("DEPLOYER_DEBUG"):
            raise
        return EXIT_PROBLEMS
    except Exception as exc:  # never a traceback for the user; DEPLOYER_DEBUG=1 shows it
        from deployer.render.app import OutputProblem, TemplateProblem

        if isinstance(exc, TemplateProblem):
            print(
                f"{exc}\n  hint: fix the template, or remove the project's templates/ "
                "folder to use the packaged one",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        if isinstance(exc, OutputProblem):
            print(f"deployer {args.command}: {exc}", file=sys.stderr)
            return EXIT_PROBLEMS
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
            name = str(exc.filename or "")
            print(
                f"deployer {args.command}: a path is too long for this system: "
                f"{name[:100]!r}{'…' if len(name) > 100 else ''}\n  hint: shorten the path "
                "(each name at most 255 bytes)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if os.environ.get("DEPLOYER_DEBUG"):
            raise
        print(
            f"deployer: internal error: {type(exc).__name__}: {exc}\n(this is a bug in "
            "deployer; run with DEPLOYER_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def cmd_validate(args) -> int:
    from deployer.checks.pipeline import check_paths

    checked = check_paths(args.paths, schema_only=args.schema_only)
    report(
        checked.diagnostics,
        len(checked.files),
        args.format,
        {"deployments": [d.name for d in checked.deployments]},
        checked.notes,
    )
    return EXIT_PROBLEMS if failed(checked.diagnostics, args.strict) else EXIT_OK


def cmd_render(args) -> int:
    from deployer.render.app import current_app, project_templates, render, write

    checked, selected, code = select(args, args.names)
    if selected is None:
        return code
    results = []
    for deployment in selected:
        app = render(deployment, args.out, project_templates(args.deployments))
        shown = display_path(app.path)
        if args.check:
            current = current_app(app)
            status = (
                "up to date"
                if current == app.source
                else ("missing" if not os.path.lexists(app.path) else "out of date")
            )
        else:
            status = "written" if write(app) else "unchanged"
        results.append(
            {"name": app.name, "path": shown, "content_hash": app.content_hash, "status": status}
        )

    if args.format == "json":
        print(render_json(checked.diagnostics, files=len(checked.files), rendered=results))
    else:
        report(
            checked.diagnostics, len(checked.files), args.format
        ) if checked.diagnostics else None
        for r in results:
            print(f"{r['status']:>11}  {r['path']}  ({r['name']}, {r['content_hash'][:12]})")
    stale = [r for r in results if r["status"] in ("missing", "out of date")]
    if stale:
        print(
            f"{len(stale)} rendered app(s) differ from their deployments; run `deployer render`",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    return EXIT_OK


def _warn(message: str) -> None:
    print(f"deployer: warning: {message}", file=sys.stderr, flush=True)


def cmd_serve(args) -> int:
    import shlex
    import time

    from deployer.local.server import (
        LocalError,
        LocalServer,
        installed_vllm,
        local_command,
        version_warning,
        without_auth_guard,
        without_sleep_mode,
        write_state,
    )
    from deployer.local.smoke import Connection, wait_healthy
    from deployer.render.app import LOG_FILE, STATE_FILE, project_templates, render, write

    if not args.local:
        print(
            "deployer serve: only --local is supported here; to serve on Modal, run "
            "`modal deploy build/NAME/app.py`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _, selected, code = select(args, [args.name])
    if selected is None:
        return code
    (deployment,) = selected
    app = render(deployment, args.out, project_templates(args.deployments))
    write(app)
    python = args.python or os.environ.get("DEPLOYER_VLLM_PYTHON") or sys.executable
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
    server = LocalServer(
        command, folder / LOG_FILE, stream_logs=args.logs, environment=local.environment_in
    )
    print(f"starting vLLM: {shlex.join(command)}", file=sys.stderr, flush=True)
    if not args.logs:
        print(f"vLLM log: {display_path(folder / LOG_FILE)}", file=sys.stderr, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    url = f"http://127.0.0.1:{args.port}"
    try:
        server.start()
        timeout = args.startup_timeout or deployment.scaling.startup_timeout
        health = wait_healthy(
            Connection(url), timeout, lambda m: print(m, file=sys.stderr, flush=True), server.alive
        )
        if not health.ok:
            print(
                f"deployer serve: vLLM did not become ready: {printable(health.detail)}",
                file=sys.stderr,
            )
            if tail := server.log_tail():
                print(f"last lines of {display_path(server.log_path)}:\n{tail}", file=sys.stderr)
            return EXIT_PROBLEMS
        model_ids = deployment.model_ids
        write_state(folder, url, server.process.pid, model_ids)
        print(f"vLLM is ready at {url}/v1 (after {health.seconds:.0f} s)", flush=True)
        print(f"models: {', '.join(model_ids)}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        while server.alive():
            time.sleep(0.5)
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
            print(
                f"deployer smoke: no known URL for {deployment.name!r}: pass --url, or "
                f"start it with `deployer serve {deployment.name} --local`",
                file=sys.stderr,
            )
            return EXIT_USAGE
        found, problem = credentials(
            deployment, os.environ, args.api_key_env, local=state is not None
        )
        if problem:
            print(f"deployer smoke: {problem}", file=sys.stderr)
            return EXIT_USAGE
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


def cmd_fit(args) -> int:
    from deployer.vllm.fit import assess

    _, selected, code = select(args, args.names, tolerate="fit.")
    if selected is None:
        return code
    results = [(d, assess(d)) for d in selected]
    if args.format == "json":
        import json

        print(json.dumps([_fit_json(d, a) for d, a in results], indent=2))
    elif len(args.names) == 1:
        deployment, assessment = results[0]
        if isinstance(assessment, str):
            print(f"deployer fit: cannot size {deployment.name}: {assessment}", file=sys.stderr)
        else:
            _print_fit(deployment, assessment)
    else:
        _print_fit_table(results)
    return (
        EXIT_OK if all(not isinstance(a, str) and a.fit.fits for _, a in results) else EXIT_PROBLEMS
    )


def _fit_json(deployment, a) -> dict:
    if isinstance(a, str):
        return {
            "deployment": deployment.name,
            "gpu": deployment.gpu.modal_spec,
            "fits": None,
            "not_checked": a,
        }
    fit, shape = a.fit, a.shape
    return {
        "deployment": deployment.name,
        "gpu": deployment.gpu.modal_spec,
        "fits": fit.fits,
        "gpu_memory_bytes": fit.total_bytes,
        "gpu_memory_utilization": fit.utilization,
        "budget_bytes": fit.budget_bytes,
        "params": shape.params,
        "weights_counted_from": shape.weights_counted,
        "dtype": shape.dtype,
        "weight_bytes": fit.weight_bytes,
        "lora_slots": fit.lora_slots,
        "lora_rank": fit.lora_rank,
        "lora_bytes": fit.lora_bytes,
        "overhead_bytes": fit.overhead_bytes,
        "kv_budget_bytes": fit.kv_budget_bytes,
        "kv_bytes_per_token": fit.kv_bytes_per_token,
        "max_model_len": fit.max_model_len,
        "max_model_len_from": fit.max_model_len_source,
        "needed_kv_bytes": fit.needed_kv_bytes,
        "max_fitting_len": fit.max_fitting_len,
        "usd_per_warm_hour": a.usd_per_hour,
        "gpus_fitting_max_model_len": [
            {"gpu": g.modal_spec, "usd_per_hour": p} for g, p in a.gpus_for_full_context
        ],
        "cheapest_fitting_gpu": {"gpu": a.cheapest[0].modal_spec, "usd_per_hour": a.cheapest[1]}
        if a.cheapest
        else None,
    }


def _print_fit(deployment, a) -> None:
    from deployer.vllm.fit import gib

    fit, shape = a.fit, a.shape

    def row(label: str, value: str, note: str = "") -> str:
        return f"  {label:<40} {value:>12}  {note}".rstrip()

    print(
        f"{deployment.name}: {deployment.base_model.served_name} on "
        f"{deployment.gpu.modal_spec}, vLLM {deployment.vllm.version}\n"
    )
    print(row(f"GPU memory ({deployment.gpu.modal_spec})", gib(fit.total_bytes)))
    print(row(f"x gpu-memory-utilization {fit.utilization}", gib(fit.budget_bytes)))
    print(
        row(
            f"- weights ({shape.params / 1e9:.2f} B params, {shape.dtype})",
            gib(fit.weight_bytes),
            f"from {shape.weights_counted}",
        )
    )
    if fit.lora_slots:
        print(
            row(
                f"- LoRA buffers ({fit.lora_slots} slot(s) x rank {fit.lora_rank})",
                gib(fit.lora_bytes),
            )
        )
    print(row("- activations, CUDA context (estimate)", gib(fit.overhead_bytes)))
    print(row("= left for the KV cache", gib(fit.kv_budget_bytes)))
    print(
        row(
            "KV cache per token",
            f"{fit.kv_bytes_per_token / 1024:.1f} KiB",
            f"{shape.layers} layers x {shape.kv_heads} KV heads x {shape.head_dim} x 2 x "
            f"{shape.kv_dtype_bytes} bytes",
        )
    )
    verdict = "fits" if fit.fits else f"DOES NOT FIT: at most {fit.max_fitting_len:,} tokens"
    print(
        row(
            f"max-model-len {fit.max_model_len:,} needs",
            gib(fit.needed_kv_bytes),
            f"{verdict} ({fit.max_model_len_source})",
        )
    )
    print()
    print(
        "  cost per warm hour: "
        f"{'$%.2f' % a.usd_per_hour if a.usd_per_hour is not None else 'unknown'} "
        f"({deployment.gpu.modal_spec})"
    )
    if a.gpus_for_full_context:
        print(
            f"  GPUs that hold {fit.max_model_len:,} tokens: "
            + ", ".join(f"{g.modal_spec} ${p:.2f}/h" for g, p in a.gpus_for_full_context)
        )
    if a.cheapest and fit.fits and a.usd_per_hour is not None and a.cheapest[1] < a.usd_per_hour:
        print(
            f"  cheaper GPU that fits this deployment: {a.cheapest[0].modal_spec} "
            f"${a.cheapest[1]:.2f}/h"
        )


def _print_fit_table(results) -> None:
    header = (
        "DEPLOYMENT",
        "GPU",
        "FITS",
        "MAX-MODEL-LEN",
        "MOST THAT FITS",
        "$/WARM HOUR",
        "CHEAPEST GPU THAT FITS",
    )
    rows = []
    for deployment, a in results:
        if isinstance(a, str):
            rows.append(
                (deployment.name, deployment.gpu.modal_spec, "?", "", "", "", f"not checked: {a}")
            )
            continue
        price = f"{a.usd_per_hour:.2f}" if a.usd_per_hour is not None else "?"
        cheapest = f"{a.cheapest[0].modal_spec} (${a.cheapest[1]:.2f}/h)" if a.cheapest else "none"
        rows.append(
            (
                deployment.name,
                deployment.gpu.modal_spec,
                "yes" if a.fit.fits else "NO",
                f"{a.fit.max_model_len:,}",
                f"{a.fit.max_fitting_len:,}",
                price,
                cheapest,
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


def cmd_schema(args) -> int:
    from deployer.spec.schema import SCHEMA_PATH

    sys.stdout.write(SCHEMA_PATH.read_text(encoding="utf-8"))
    return EXIT_OK
