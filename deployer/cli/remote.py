"""The commands that compare with or change what runs on Modal: plan, apply, status, rollback,
prefetch, endpoints.
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
from deployer.core.limits import MAX_SUMMARY_CHARS
from deployer.core.table import table

NO_CREDENTIALS = (
    "no Modal credentials (MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or `modal token new`)"
)
EXIT_CHANGES = 2  # plan --detailed-exitcode, as terraform: 0 nothing to do, 1 error, 2 changes
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
OUTCOME_COLUMNS = ("DEPLOYMENT", "ACTION", "RESULT", "VERSION", "TIME", "DETAIL")
STATUS_COLUMNS = (
    "DEPLOYMENT",
    "STATE",
    "DESIRED",
    "DEPLOYED",
    "ADAPTERS",
    "GPU",
    "$/WARM H",
    "URL",
)


def register(commands) -> None:
    folders = folder_options()
    modal = argparse.ArgumentParser(add_help=False)
    modal.add_argument(
        "--env",
        "-e",
        default=None,
        metavar="ENV",
        help="Modal environment (default: the profile's default)",
    )
    raw = argparse.RawDescriptionHelpFormatter

    plan = commands.add_parser(
        "plan",
        parents=[folders, modal],
        help="what apply would do: create, update, unchanged, orphan",
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

    status = commands.add_parser(
        "status",
        parents=[folders, modal],
        help="desired against deployed, URLs, cost",
        formatter_class=raw,
        description="For each deployment: its desired and deployed versions, whether they match, "
        "its URL, adapters, GPU and estimated cost per warm hour.",
    )
    status.add_argument(
        "names", nargs="*", metavar="NAME", help="deployments to show (default: all)"
    )
    status.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    status.set_defaults(run=cmd_status)

    rollback = commands.add_parser(
        "rollback",
        parents=[folders, modal],
        help="serve an earlier version of a deployment again",
        formatter_class=raw,
        description="Serve an earlier version again (`modal app rollback`): the previous one, or "
        "VERSION (e.g. v3). The rollback is a new version in the app's history; the "
        "next `apply` re-deploys the YAML's version unless the YAML is reverted too. For a "
        "dynamic deployment with adapters hot-added onto the serving version, NAME alone takes "
        "them out instead (no new version).",
        epilog="examples:\n  deployer rollback chess-puzzle\n  deployer rollback chess-puzzle v3",
    )
    rollback.add_argument("name", metavar="NAME", help="deployment (app) name")
    rollback.add_argument(
        "version",
        nargs="?",
        default=None,
        metavar="VERSION",
        help="version to serve, e.g. v3 (default: the previous one)",
    )
    rollback.set_defaults(run=cmd_rollback)

    prefetch = commands.add_parser(
        "prefetch",
        parents=[folders, modal],
        help="download a deployment's weights into Modal's cache volume",
        formatter_class=raw,
        description="Run each deployment's download_weights function on Modal (a CPU container): "
        "the base model and Hub adapters land in the huggingface-cache volume, so the "
        "next cold start does not download them. `apply` does this itself before "
        "deploying new weights (cold_start.prefetch).",
        epilog="examples:\n  deployer prefetch chess-puzzle",
    )
    prefetch.add_argument(
        "names", nargs="*", metavar="NAME", help="deployments to prefetch (default: all)"
    )
    prefetch.set_defaults(run=cmd_prefetch)

    endpoints = commands.add_parser(
        "endpoints",
        parents=[folders, modal],
        help="OpenAI base URL, model ids and a client snippet per deployment",
        formatter_class=raw,
        description="For each deployment: the OpenAI-compatible base URL, the model ids it serves, "
        "and the two lines of Python that point the OpenAI client at it.",
    )
    endpoints.add_argument(
        "names", nargs="*", metavar="NAME", help="deployments to show (default: all)"
    )
    endpoints.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    endpoints.set_defaults(run=cmd_endpoints)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _say(message: str) -> None:
    from deployer.core.diagnostics import printable

    print(printable(message), file=sys.stderr, flush=True)  # progress quotes servers' replies


def _platform(args):
    from deployer.deploy.platform.modal_cli import ModalCli

    return ModalCli(args.env)


def _without_credentials(args) -> bool:
    """Whether Modal would refuse for want of a token; if so, says so as plan and apply do, rather
    than passing on Modal's own "Token missing" after the command has started its work."""
    from deployer.deploy.platform.modal_cli import has_credentials

    if has_credentials():
        return False
    print(f"deployer {args.command}: {NO_CREDENTIALS}", file=sys.stderr)
    return True


def _desired(args, checked):
    from deployer.deploy.desired import desired, project_for
    from deployer.render.templates import project_templates

    project = project_for(args.deployments)
    return project, desired(
        checked.deployments, args.out, project, project_templates(args.deployments)
    )


def _refuse_unknown(names, known, what: str = "deployment or deployed app") -> None:
    from deployer.core.text import did_you_mean

    if unknown := [n for n in names if n not in known]:
        listed = f"known: {', '.join(sorted(known)) or 'none'}"
        raise UsageError(
            *(
                f"no {what} named {name!r} ({did_you_mean(name, known) or listed})"
                for name in unknown
            )
        )


def build_plan(args, checked, live_only: bool = False):
    """(plan, desired, platform or None, exit code or None); a name that is neither a deployment
    nor a deployed app is a UsageError."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.plan import make_plan, to_update
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.platform.modal_cli import has_credentials
    from deployer.deploy.state import (
        Layout,
        RefTrees,
        deployed_from_platform,
        deployed_from_ref,
        hot_add_states,
        no_hot_add_from,
        previous_from_git,
    )

    project, want = _desired(args, checked)
    against = getattr(args, "against", None)
    fallback = None
    platform = None
    if against is None:
        if not has_credentials():
            fallback = NO_CREDENTIALS
        else:
            platform = _platform(args)
            try:
                deployed = deployed_from_platform(platform)
            except PlatformError as exc:
                fallback, platform = f"could not read Modal: {exc}", None
        if fallback:
            if live_only:
                print(f"deployer {args.command}: {fallback}", file=sys.stderr)
                return None, want, None, EXIT_PROBLEMS
            base = os.environ.get("GITHUB_BASE_REF")
            against = f"origin/{base}" if base else "HEAD"
            fallback += f"; comparing with what git ref {against} would deploy instead"
    try:
        layout = Layout.of(args.deployments, args.out)
    except RefError as exc:
        if against is not None:
            print(f"deployer {args.command}: cannot compare with {against}: {exc}", file=sys.stderr)
            return None, want, None, EXIT_PROBLEMS
        layout = None
    previous: dict = {}  # not in git: nothing says what the deployed versions were rendered from
    unread: dict = {}
    states: dict = {}  # hot-adds recorded in dynamic deployments' adapters volumes
    unusable: dict = {}
    if platform is not None:
        states, unusable = hot_add_states(platform, want, deployed, args.names)
    where = platform.where if platform else ""
    if layout is not None:
        with RefTrees(layout, project) as trees:
            try:
                if against is not None:
                    commit, deployed, previous = deployed_from_ref(trees, against)
                    where = f"git ref {against} ({commit[:7]})"
                else:
                    previous, unread = previous_from_git(
                        trees, deployed, to_update(want, deployed, args.names)
                    )
            except RefError as exc:
                print(f"deployer {args.command}: {exc}", file=sys.stderr)
                return None, want, None, EXIT_PROBLEMS
    _refuse_unknown(args.names, set(want) | set(deployed))
    replace = getattr(args, "replace", [])
    _refuse_unknown(replace, set(want), what="deployment")
    if args.names and (outside := [n for n in replace if n not in args.names]):
        raise UsageError(
            f"--replace {outside[0]}: not among the deployments named ({', '.join(args.names)}); "
            "name it too"
        )
    result = make_plan(
        want,
        deployed,
        previous,
        project,
        where,
        args.names,
        fallback,
        replace,
        unread,
        states,
        no_hot_add_from(Path(args.deployments)),
    )
    if unusable:
        from dataclasses import replace as with_fields

        notes = tuple(f"{name}: {why}" for name, why in sorted(unusable.items()))
        result = with_fields(result, notes=result.notes + notes)
    return result, want, platform, None


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
                    lambda m: _say(f"{d.name}: {m}"),
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
                    lambda m: _say(f"{d.name}: {m}"),
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
                    _say,
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
            _say("interrupted: finishing or rolling back the deploys in flight; nothing new starts")
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


def cmd_status(args) -> int:
    from deployer.deploy.platform import PlatformError, endpoint_problem
    from deployer.local.smoke import redact
    from deployer.vllm.fit import usd_per_hour

    checked, _, code = select(args, [])
    if code:
        return code
    result, want, platform, code = build_plan(args, checked, live_only=True)
    if result is None:
        return code
    state = {
        "create": "not deployed",
        "update": "out of date",
        "hot-add": "adapters to hot-add",
        "unchanged": "in sync",
        "orphan": "orphan (no YAML)",
    }
    rows = []
    for action in result.actions:
        d = want.get(action.name)
        url = None
        if action.deployed is not None:
            try:
                url = platform.web_url(action.name)
                if url and (refused := endpoint_problem(url)):
                    url = f"? ({refused})"
            except PlatformError as exc:
                url = f"? ({exc})"
        price = usd_per_hour(d.deployment.gpu) if d else None
        rows.append(
            {
                "name": action.name,
                "state": state[action.kind],
                "desired": d.tag if d else None,
                "deployed": {
                    "version": action.deployed.number,
                    "tag": action.deployed.tag,
                    "commit": action.deployed.commit,
                }
                if action.deployed
                else None,
                "url": redact(url) if url else None,
                "adapters": len(d.deployment.adapters) if d else None,
                "gpu": d.deployment.gpu.modal_spec if d else None,
                "usd_per_warm_hour": round(price, 2) if price is not None else None,
            }
        )
    if args.format == "json":
        print(
            json.dumps(
                {"where": platform.where, "project": result.project.name, "deployments": rows},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        from deployer.deploy.plan import short_tag

        lines = []
        for r in rows:
            deployed = (
                f"v{r['deployed']['version']} {short_tag(r['deployed']['tag'])}"
                if r["deployed"]
                else "-"
            )
            lines.append(
                (
                    r["name"],
                    r["state"],
                    short_tag(r["desired"]) if r["desired"] else "-",
                    deployed,
                    str(r["adapters"] if r["adapters"] is not None else "-"),
                    r["gpu"] or "-",
                    f"{r['usd_per_warm_hour']:.2f}" if r["usd_per_warm_hour"] is not None else "?",
                    r["url"] or "-",
                )
            )
        print(table(lines, STATUS_COLUMNS))
        print(f"\n{platform.where}, project {result.project.name}")
    return EXIT_OK


def cmd_rollback(args) -> int:
    import re

    from deployer.deploy.desired import parse_tag, project_for
    from deployer.deploy.platform import PlatformError

    version = None
    if args.version is not None:
        match = re.fullmatch(r"v?(\d+)", args.version)
        if not match:
            raise UsageError(
                f"{args.version!r} is not a version; use e.g. v3 (see "
                f"`modal app history {args.name}`)"
            )
        version = int(match.group(1))
    if _without_credentials(args):
        return EXIT_PROBLEMS
    platform = _platform(args)
    try:
        history = platform.history(args.name)
        if not history:
            print(
                f"deployer rollback: {args.name!r} has never been deployed on {platform.where}",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        current = history[0]
        owner = parse_tag(current.tag)
        project = project_for(args.deployments)
        if owner is None or owner.project_id != project.id:
            whose = "another project's" if owner else "not the deployer's"
            print(
                f"deployer rollback: {args.name} on {platform.where} is {whose} (tag "
                f"{current.tag or 'none'}); this project ({project.name}) leaves it alone",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        dynamic, hot_add = _recorded_state(platform, args.name)
        if version is None and hot_add is not None and hot_add.is_hot_add:
            if hot_add.current_for(owner):
                return _undo_hot_add(args, platform, project, current, owner, hot_add)
        target = (
            version if version is not None else (history[1].number if len(history) > 1 else None)
        )
        if target is None:
            print(
                f"deployer rollback: {args.name} has only one version (v{current.number}); "
                "nothing to roll back to",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        if target not in {v.number for v in history}:
            print(
                f"deployer rollback: {args.name} has no version v{target} (versions: "
                f"{', '.join(f'v{v.number}' for v in history)})",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        platform.rollback(args.name, target)
        now = platform.history(args.name)[0]
    except PlatformError as exc:
        print(f"deployer rollback: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"{args.name}: v{now.number} now serves what v{target} deployed (was v{current.number}).")
    if dynamic:  # its adapters volume follows the version
        synced = _sync_adapters_volume(args, platform, project, now)
        if synced is not None:
            print(f"deployer rollback: {synced}", file=sys.stderr)
            return EXIT_PROBLEMS
    print(
        "The YAML did not change: the next `deployer apply` deploys it again unless you "
        "revert it too."
    )
    return EXIT_OK


def _recorded_state(platform, name: str):
    """(whether app `name` has a state file in an adapters volume, i.e. is dynamic; the state it
    records, if it can be read). Raises PlatformError (Modal unreachable)."""
    from deployer.deploy.hot_add import STATE_FILE, adapters_volume, parse_state

    volume = adapters_volume(name)
    text = platform.read_volume_file(volume, STATE_FILE)
    if text is None:
        return False, None
    try:
        return True, parse_state(text)
    except ValueError as exc:  # rolling back the app still goes ahead
        _say(f"{name}: {STATE_FILE} of volume {volume} is ignored: {exc}")
        return True, None


def _undo_hot_add(args, platform, project, current, owner, hot_add) -> int:
    """Roll back the hot-adds made since the serving version was deployed: its own commit's app
    syncs the adapters volume back (running containers unload what went), and the state file
    says the version serves its own adapters again. No new app version."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.state import Layout, record_state, stage_version

    added = ", ".join(n for n, _ in hot_add.adapters) or "none"
    try:
        layout = Layout.of(args.deployments, args.out)
        earlier = stage_version(layout, project, platform, current.commit, args.name)
        record_state(platform, earlier, owner.hash_prefix, current.commit)
    except (RefError, PlatformError) as exc:
        print(
            f"deployer rollback: cannot undo the hot-add on {args.name} v{current.number}: {exc}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    kept = ", ".join(a.name for a in earlier.deployment.adapters) or "none"
    print(
        f"{args.name}: hot-add undone with no restart; v{current.number} serves its own "
        f"adapters again ({kept}; were {added})."
    )
    print(
        "The YAML did not change: the next `deployer apply` hot-adds them again unless you "
        "revert it too."
    )
    return EXIT_OK


def _sync_adapters_volume(args, platform, project, now) -> str | None:
    """After an app rollback of a dynamic deployment: its adapters volume holds what the version
    now serving declares. Returns why not, if it could not."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.desired import parse_tag
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.state import Layout, record_state, stage_version

    tag = parse_tag(now.tag)
    try:
        layout = Layout.of(args.deployments, args.out)
        served = stage_version(layout, project, platform, now.commit, args.name)
        if tag is not None:
            record_state(platform, served, tag.hash_prefix, now.commit)
    except (RefError, PlatformError) as exc:
        return (
            f"{args.name}'s adapters volume was not synced to v{now.number}'s adapters, so "
            f"adapters it does not declare may still be served: {exc}"
        )
    return None


def cmd_prefetch(args) -> int:
    from deployer.deploy.apply import PREFETCH_FUNCTION
    from deployer.deploy.platform import PlatformError
    from deployer.render.app import render
    from deployer.render.output import write
    from deployer.render.templates import project_templates

    _, selected, code = select(args, args.names)
    if selected is None:
        return code
    if _without_credentials(args):
        return EXIT_PROBLEMS
    platform = _platform(args)
    failed = 0
    for d in selected:
        app = render(d, args.out, project_templates(args.deployments))
        write(app)
        _say(
            f"{d.name}: downloading "
            f"{', '.join(d.model_ids[:1] + [a.name for a in d.adapters if not a.source.is_local])} "
            "into the cache volume"
        )
        try:
            platform.run(app.path, PREFETCH_FUNCTION)
            print(f"{d.name}: weights cached on {platform.where}")
        except PlatformError as exc:
            failed += 1
            print(f"deployer prefetch: {d.name}: {exc}", file=sys.stderr)
    return EXIT_PROBLEMS if failed else EXIT_OK


def cmd_endpoints(args) -> int:
    from deployer.deploy.platform import PlatformError, endpoint_problem
    from deployer.deploy.platform.modal_cli import has_credentials
    from deployer.local.smoke import redact

    _, selected, code = select(args, args.names)
    if selected is None:
        return code
    platform = _platform(args) if has_credentials() else None
    rows = []
    for d in selected:
        url, why = None, "no Modal credentials"
        if platform is not None:
            try:
                url = platform.web_url(d.name)
                why = "not deployed" if url is None else ""
            except PlatformError as exc:
                why = str(exc)
            if url and (refused := endpoint_problem(url)):
                url, why = None, refused  # a client pointed there would send its key
        base_url = f"{redact(url).rstrip('/')}/v1" if url else None
        key = 'os.environ["VLLM_API_KEY"]' if d.auth.api_key_secret else '"not-needed"'
        proxy = (
            ', default_headers={"Modal-Key": os.environ["MODAL_PROXY_KEY"], '
            '"Modal-Secret": os.environ["MODAL_PROXY_SECRET"]}'
            if d.auth.proxy
            else ""
        )
        snippet = (
            f'client = OpenAI(base_url="{base_url or "<URL>/v1"}", '
            f'api_key={key}{proxy})\nclient.chat.completions.create(model="{d.model_ids[-1]}", '
            f'messages=[{{"role": "user", "content": "Hello"}}])'
        )
        rows.append(
            {
                "name": d.name,
                "base_url": base_url,
                "unknown_because": why or None,
                "models": d.model_ids,
                "auth": "api key" if d.auth.api_key_secret else "proxy" if d.auth.proxy else "none",
                "snippet": snippet,
            }
        )
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    for r in rows:
        print(f"{r['name']}")
        print(f"  base URL: {r['base_url'] or '<unknown: ' + r['unknown_because'] + '>'}")
        print(f"  models:   {', '.join(r['models'])}")
        print("  " + r["snippet"].replace("\n", "\n  "))
        print()
    return EXIT_OK
