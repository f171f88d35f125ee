"""plan and apply: what would change on Modal and why, then deploying it, smoke-testing it and
rolling back what fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from deployer.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    UsageError,
    folder_options,
    select,
)
from deployer.cli.lock import LOCKED_HELP
from deployer.cli.modal_common import build_plan, modal_options, say
from deployer.core.limits import MAX_SUMMARY_CHARS
from deployer.core.table import table

EXIT_CHANGES = 2  # plan --detailed-exitcode, as terraform: 0 nothing to do, 1 error, 2 changes
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
OUTCOME_COLUMNS = ("DEPLOYMENT", "ACTION", "RESULT", "VERSION", "TIME", "DETAIL")


def register(commands) -> None:
    folders = folder_options()
    modal = modal_options()
    raw = argparse.RawDescriptionHelpFormatter

    plan = commands.add_parser(
        "plan",
        parents=[folders, modal],
        help="what apply would do: create, update, hot-add, unchanged, orphan, conflict",
        formatter_class=raw,
        description="Compare each deployment's deploy hash with the tag of the version serving on "
        "Modal, and say per deployment what `apply` would do and, for updates, what "
        "changes and what it costs. Without Modal credentials, or with --against, "
        "compare with what a git ref would have deployed instead (and say so).",
        epilog="examples:\n  deployer plan\n  deployer plan chess-puzzle --detailed-exitcode\n "
        " deployer plan --against origin/main --format github\n\nexit codes: 0 success; "
        "1 errors; with --detailed-exitcode 0 no changes, 1 errors, 2 changes.",
    )
    plan.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="deployments (app names) to plan (default: all, and orphans)",
    )
    plan.add_argument(
        "--against",
        default=None,
        metavar="REF",
        help="compare with git ref REF instead of Modal (offline)",
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when none",
    )
    plan.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME",
        help="plan to redeploy NAME even if unchanged (repeatable)",
    )
    plan.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json, or github (also writes a markdown plan to "
        "$GITHUB_STEP_SUMMARY)",
    )
    plan.add_argument("--locked", action="store_true", help=LOCKED_HELP)
    plan.set_defaults(run=cmd_plan)

    apply = commands.add_parser(
        "apply",
        parents=[folders, modal],
        help="deploy what changed, smoke-test it, roll back failures",
        formatter_class=raw,
        description="Run the plan on Modal: deploy each created or updated deployment with `modal "
        "deploy --tag <deploy hash>`, wait for its endpoint and smoke-test every model; "
        "if that fails, roll back to the version that served before (or stop a first "
        "deploy). Independent deployments run in parallel. Asks before changing "
        "anything unless --yes.",
        epilog="examples:\n  deployer apply\n  deployer apply chess-puzzle --yes\n  deployer "
        "apply --yes --prune --env prod\n  deployer apply --replace chess-puzzle   # "
        "after rotating its API-key Secret\n\ncredentials for the smoke check (never "
        "printed): $VLLM_API_KEY (or --api-key-env VAR) for API-key\ndeployments, "
        "$MODAL_PROXY_KEY and $MODAL_PROXY_SECRET for proxy-auth ones.\nexit codes: 0 "
        "all done, 1 something failed (see the table), 2 usage.",
    )
    apply.add_argument(
        "names", nargs="*", metavar="NAME", help="deployments (app names) to apply (default: all)"
    )
    apply.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    apply.add_argument(
        "--prune",
        action="store_true",
        help="also stop orphans: apps this project deployed whose YAML is gone",
    )
    apply.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME",
        help="redeploy NAME even if unchanged, e.g. after rotating one of its Secrets (repeatable)",
    )
    apply.add_argument(
        "--parallel",
        type=_positive,
        default=4,
        metavar="N",
        help="deployments deployed at once (default: 4)",
    )
    apply.add_argument(
        "--no-smoke",
        action="store_true",
        help="skip the smoke check (a broken deploy then stays live)",
    )
    apply.add_argument(
        "--api-key-env",
        default="VLLM_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: VLLM_API_KEY)",
    )
    apply.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json, or github (also writes the results to $GITHUB_STEP_SUMMARY)",
    )
    apply.add_argument("--locked", action="store_true", help=LOCKED_HELP)
    apply.set_defaults(run=cmd_apply)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _write_summary(markdown: str) -> None:
    path = os.environ.get(SUMMARY_ENV)
    if path:
        if len(markdown) > MAX_SUMMARY_CHARS:
            cut = markdown.rfind("\n", 0, MAX_SUMMARY_CHARS)
            markdown = (
                markdown[: max(cut, 0)]
                + f"\n\n_…the rest ({len(markdown) - max(cut, 0):,} characters) is in the "
                "job's log._"
            )
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def _noting_upstream(plan, checked, names):
    """`plan` with each locked branch or tag that has moved on the Hub noted: one request per
    repo@revision, within the Hub budget of hub.py (none offline, none once it is unreachable)."""
    from deployer.deploy.plan import with_upstream
    from deployer.sources import hub
    from deployer.sources.lock import in_force, upstream_moves

    pinned = in_force(d for d in checked.deployments if not names or d.name in names)
    unchecked: dict[str, str] = {}

    def resolve(repo: str, revision: str) -> tuple[str | None, str]:
        found = hub.resolve_revision(repo, revision)
        if isinstance(found, hub.Missing):
            unchecked[f"{repo}@{revision}"] = found.reason
            return None, found.reason
        return found, ""

    return with_upstream(plan, list(upstream_moves(pinned, resolve)), unchecked)


def cmd_plan(args) -> int:
    from deployer.deploy.plan import format_markdown, format_text, to_json

    checked, _, code = select(args, [])
    if code:
        return code
    result, _, _, code = build_plan(args, checked)
    if result is None:
        return code
    result = _noting_upstream(result, checked, args.names)
    if args.format == "json":
        print(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        print(format_text(result))
        if args.format == "github":
            _write_summary(format_markdown(result))
    if any(a.blocked for a in result.actions):
        print(
            "deployer plan: some deployments conflict with apps of another project (see above)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    return EXIT_CHANGES if args.detailed_exitcode and result.has_changes else EXIT_OK


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_apply(args) -> int:
    from deployer.deploy.apply import AdapterVolumes, LockError, apply, apply_lock
    from deployer.deploy.desired import PROJECT_ENV
    from deployer.deploy.hot_add import smoke_adapters
    from deployer.deploy.plan import CREATE, HOT_ADD, ORPHAN, UPDATE, format_text
    from deployer.local.smoke import Connection, SmokeSpec, credentials, normalise_url, run

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(
            f"--out {args.out} is a file; it must be a folder (rendered "
            "apps go in <out>/<name>/app.py)"
        )
    checked, _, code = select(args, [])
    if code:
        return code
    try:
        with apply_lock(Path(args.out)):
            result, want, platform, code = build_plan(args, checked, live_only=True)
            if result is None:
                return code
            print(format_text(result), file=sys.stderr if args.format == "json" else sys.stdout)
            orphans = [a for a in result.actions if a.kind == ORPHAN]
            if args.prune and orphans and not result.project.stable:
                raise UsageError(
                    "refusing to prune: this project's id comes from "
                    f"{result.project.source}, which another checkout of it would not "
                    f"share; set {PROJECT_ENV} (e.g. to the repository's URL) and deploy "
                    "again first"
                )
            if args.prune and orphans and not want:
                raise UsageError(
                    f"refusing to prune: {args.deployments} has no "
                    f"deployments, so every app of this project ({len(orphans)}) would be "
                    "stopped; check --deployments"
                )
            todo = [
                a
                for a in result.actions
                if a.kind in (CREATE, UPDATE, HOT_ADD) or (a.kind == ORPHAN and args.prune)
            ]
            if not todo:
                kept = len(orphans)
                message = "Nothing to do." + (
                    f" {kept} orphan(s) kept: `deployer apply --prune` stops them." if kept else ""
                )
                blocked = [a for a in result.actions if a.blocked]
                if args.format == "json" or blocked:
                    outcomes = apply(result, want, platform, None, False, 1)
                    _report_outcomes(args, outcomes, platform.where)
                    return EXIT_PROBLEMS if blocked else EXIT_OK
                print(message)
                return EXIT_OK
            headers = {}
            if not args.no_smoke:
                problems = []
                for action in todo:
                    if action.kind != ORPHAN:
                        headers[action.name], problem = credentials(
                            want[action.name].deployment, os.environ, args.api_key_env
                        )
                        problems += [problem] if problem else []
                if problems:
                    for problem in problems:
                        print(f"deployer apply: cannot smoke-test {problem}", file=sys.stderr)
                    print(
                        "nothing deployed: set the credentials, or pass --no-smoke to "
                        "deploy unchecked",
                        file=sys.stderr,
                    )
                    return EXIT_USAGE
            if not args.yes:
                if not sys.stdin.isatty():
                    raise UsageError("pass --yes to apply without a terminal to confirm on")
                if not _confirm(f"Apply these {len(todo)} change(s) to {platform.where}?"):
                    print("Nothing applied.")
                    return EXIT_OK

            cancel = threading.Event()

            def smoke(desired, url, cancel_event):
                d = desired.deployment
                conn = Connection(normalise_url(url), headers.get(d.name, ()))
                return run(
                    conn,
                    SmokeSpec.for_deployment(d),
                    d.scaling.startup_timeout,
                    lambda m: say(f"{d.name}: {m}"),
                    alive=lambda: not cancel_event.is_set(),
                )

            def smoke_new_adapters(desired, url, folders, cancel_event):
                d = desired.deployment
                conn = Connection(normalise_url(url), headers.get(d.name, ()))
                return smoke_adapters(
                    conn,
                    SmokeSpec.for_deployment(d),
                    folders,
                    d.scaling.startup_timeout,
                    lambda m: say(f"{d.name}: {m}"),
                    cancel_event,
                )

            volumes = AdapterVolumes(
                None if args.no_smoke else smoke_new_adapters,
                *_volume_steps(args, result.project, platform),
            )
            outcomes = _run_interruptibly(
                lambda: apply(
                    result,
                    want,
                    platform,
                    None if args.no_smoke else smoke,
                    args.prune,
                    args.parallel,
                    say,
                    cancel,
                    volumes,
                ),
                cancel,
            )
    except LockError as exc:
        print(f"deployer apply: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    _report_outcomes(args, outcomes, platform.where)
    if cancel.is_set():
        return 130
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_PROBLEMS


def _volume_steps(args, project, platform):
    """(restore, restorable, record) for AdapterVolumes: sync an app's adapters volume to what a
    commit declares, rendered from that commit's own files; whether a recorded commit may be
    rendered so; write its state file."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.state import (
        Layout,
        checkout_commit,
        record_state,
        stage_version,
        trusted_commit,
    )

    commit = checkout_commit(Path(args.deployments))

    def layout():
        try:
            return Layout.of(args.deployments, args.out)
        except RefError as exc:
            raise RefError(f"the version serving before cannot be rendered: {exc}") from None

    def restore(name: str, at: str):
        return stage_version(layout(), project, platform, at, name)

    def restorable(recorded: str) -> str:
        return trusted_commit(layout().root, recorded)

    def record(desired, tag_hash: str):
        return record_state(platform, desired, tag_hash, commit)

    return restore, restorable, record


def _run_interruptibly(work, cancel: threading.Event):
    """Run `work` in a thread so Ctrl-C (or SIGTERM) sets `cancel`: deploys in flight then finish
    or roll back, and nothing new starts, instead of dying half-way."""
    import signal

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", _capture(work)), daemon=True)

    def on_signal(signum, frame):
        if not cancel.is_set():
            say("interrupted: finishing or rolling back the deploys in flight; nothing new starts")
        cancel.set()

    # Our own handlers while it runs: a KeyboardInterrupt raised inside Thread.join can leave the
    # thread looking finished when it is not (CPython), and the deploys in flight must finish.
    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    ok, value = box["value"]
    if not ok:
        raise value
    return value


def _capture(work):
    try:
        return True, work()
    except BaseException as exc:  # re-raised in the caller's thread
        return False, exc


def _report_outcomes(args, outcomes, where: str) -> None:
    from deployer.core.diagnostics import printable
    from deployer.deploy.apply import LOGS_SECTION
    from deployer.deploy.plan import md
    from deployer.local.smoke import redact

    if args.format == "json":
        print(
            json.dumps(
                {
                    "where": where,
                    "ok": all(o.ok for o in outcomes),
                    "results": [
                        {
                            "name": o.name,
                            "action": o.action,
                            "result": o.result,
                            "ok": o.ok,
                            "detail": o.detail,
                            "url": redact(o.url) if o.url else None,
                            "version": o.version,
                            "seconds": round(o.seconds, 1),
                            "checks": [
                                {"name": c.name, "ok": c.ok, "detail": c.detail} for c in o.checks
                            ],
                        }
                        for o in outcomes
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    # A failed deploy's detail can end with the app's last log lines: they go under the table.
    details = [o.detail.partition(LOGS_SECTION) for o in outcomes]
    rows = [
        (
            o.name,
            o.action,
            o.result.upper() if not o.ok else o.result,
            f"v{o.version}" if o.version else "",
            f"{o.seconds:.0f} s" if o.seconds else "",
            printable(summary, 400),
        )
        for o, (summary, _, _) in zip(outcomes, details)
    ]
    print()
    print(table(rows, OUTCOME_COLUMNS))
    for o, (_, section, logs) in zip(outcomes, details):
        if section:
            lines = (section.strip() + logs).split("\n")
            print(f"\n{o.name}: " + "\n".join(printable(line) for line in lines))
    failed = [o for o in outcomes if not o.ok]
    print(
        f"\n{len(outcomes) - len(failed)} of {len(outcomes)} succeeded on {where}"
        + (f"; {len(failed)} failed: {', '.join(o.name for o in failed)}" if failed else "")
    )
    if args.format == "github":
        lines = [
            "## Deployment results",
            "",
            "| deployment | action | result | version | detail |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{o.name}` | {o.action} | {'✅' if o.ok else '❌'} {o.result} | "
            f"{f'v{o.version}' if o.version else ''} | {md(o.detail)} |"
            for o in outcomes
        ]
        _write_summary("\n".join(lines) + "\n")
