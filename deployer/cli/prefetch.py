"""prefetch: download a deployment's weights into Modal's cache volume before a cold start
needs them.
"""

from __future__ import annotations

import argparse
import sys

from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, folder_options, select
from deployer.cli.modal_common import modal_options, modal_platform, say, without_credentials


def register(commands) -> None:
    folders = folder_options()
    modal = modal_options()
    raw = argparse.RawDescriptionHelpFormatter

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


def cmd_prefetch(args) -> int:
    from deployer.deploy.apply import PREFETCH_FUNCTION
    from deployer.deploy.platform import PlatformError
    from deployer.render.app import render
    from deployer.render.output import write
    from deployer.render.templates import project_templates

    _, selected, code = select(args, args.names)
    if selected is None:
        return code
    if without_credentials(args):
        return EXIT_PROBLEMS
    platform = modal_platform(args)
    failed = 0
    for d in selected:
        app = render(d, args.out, project_templates(args.deployments))
        write(app)
        say(
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
