"""endpoints: each deployment's OpenAI base URL, model ids and a client snippet pointing at it."""

from __future__ import annotations

import argparse
import json

from deployer.cli.common import EXIT_OK, folder_options, select
from deployer.cli.modal_common import modal_options, modal_platform


def register(commands) -> None:
    folders = folder_options()
    modal = modal_options()
    raw = argparse.RawDescriptionHelpFormatter

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


def cmd_endpoints(args) -> int:
    from deployer.deploy.platform import PlatformError, endpoint_problem
    from deployer.deploy.platform.modal_cli import has_credentials
    from deployer.local.smoke import redact

    _, selected, code = select(args, args.names)
    if selected is None:
        return code
    platform = modal_platform(args) if has_credentials() else None
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
