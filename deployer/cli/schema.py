"""`deployer schema`: the JSON Schema deployment files follow, for editors and other tools.

Registered last, after the remote commands, where `deployer --help` has always listed it."""

from __future__ import annotations

import sys

from deployer.cli.common import EXIT_OK


def register(commands) -> None:
    schema = commands.add_parser(
        "schema",
        help="print the deployment JSON Schema",
        description="Print the JSON Schema (draft 2020-12) that deployment files follow.",
    )
    schema.set_defaults(run=cmd_schema)


def cmd_schema(args) -> int:
    from deployer.spec.schema import SCHEMA_PATH

    sys.stdout.write(SCHEMA_PATH.read_text(encoding="utf-8"))
    return EXIT_OK
