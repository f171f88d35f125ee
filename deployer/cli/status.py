"""status: each deployment's desired and deployed versions side by side, with its URL,
adapters, GPU and cost per warm hour.
"""

from __future__ import annotations

import argparse
import json

from deployer.cli.common import EXIT_OK, folder_options, select
from deployer.cli.modal_common import build_plan, modal_options
from deployer.core.table import table

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
    modal = modal_options()
    raw = argparse.RawDescriptionHelpFormatter

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
