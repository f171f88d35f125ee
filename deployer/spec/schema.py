"""JSON Schema validation of a loaded deployment, with errors placed at file:line:column.

The schema (`deployment.schema.json`, draft 2020-12) is the reference for the file format. Besides
standard keywords it carries two annotations of ours: `x-hint` (how to fix a value that fails the
keyword next to it) and `x-message` (what a failed `oneOf` means in words).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Sequence

from deployer.core.diagnostics import Diagnostic, format_path
from deployer.core.text import did_you_mean
from deployer.spec.load import Document, Span

SCHEMA_PATH = Path(__file__).parents[1] / "deployment.schema.json"


@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator():
    # Imported here: the CLI must start fast for commands that never validate.
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


@functools.cache
def _fast_check():
    """The same schema compiled to Python by fastjsonschema: a yes/no answer about 10x faster than
    jsonschema, which is then asked only about documents that fail, for its full explanations.
    fastjsonschema speaks draft 7, so `dependentRequired` becomes draft 7's `dependencies`. A test
    (tests/spec/test_schema_fast_path.py) checks on generated documents that it never passes a
    document jsonschema rejects."""
    import fastjsonschema

    def draft7(node):
        if isinstance(node, dict):
            node = {key: draft7(value) for key, value in node.items()}
            if "dependentRequired" in node:
                node["dependencies"] = node.pop("dependentRequired")
            return node
        return [draft7(value) for value in node] if isinstance(node, list) else node

    return fastjsonschema.compile(
        {**draft7(schema()), "$schema": "http://json-schema.org/draft-07/schema#"}
    )


def passes_fast_check(data) -> bool:
    try:
        _fast_check()(data)
        return True
    except Exception:  # JsonSchemaException, or anything odd: let jsonschema decide and explain
        return False


def validate(document: Document) -> list[Diagnostic]:
    """Every schema violation in `document`, each at the position of the offending key or value."""
    if passes_fast_check(document.data):
        return []
    found: dict[tuple, Diagnostic] = {}
    for error in _validator().iter_errors(document.data):
        for diagnostic in _explain(error, document):
            found.setdefault((diagnostic.line, diagnostic.column, diagnostic.message), diagnostic)
    return list(found.values())


def failed_parts(data: Any) -> frozenset[str]:
    """The top-level keys of `data` (a mapping) whose value the schema refuses, or that are
    missing though required, or are not allowed at all: the parts the semantic checks must not
    read. Empty when the document passes."""
    if passes_fast_check(data):
        return frozenset()
    parts: set[str] = set()
    for error in _validator().iter_errors(data):
        path = tuple(error.absolute_path)
        if path:
            parts.add(str(path[0]))
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = schema()["properties"]
            parts.update(str(key) for key in error.instance if key not in allowed)
        elif error.validator == "required":
            parts.update(
                prop
                for prop in error.validator_value
                if error.message == f"{prop!r} is a required property"
            )
        else:  # the document as a whole (not a mapping): nothing can be read from it
            parts.update(schema()["properties"])
    return frozenset(parts)


def _explain(error, document: Document) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    kind = error.validator
    sub = error.schema if isinstance(error.schema, dict) else {}

    def at(
        span_path: tuple, message: str, hint: str = "", rule: str = "", span: Span | None = None
    ) -> Diagnostic:
        span = span or document.where(span_path)
        return Diagnostic(
            span.file,
            span.line,
            span.column,
            message,
            path=span_path,
            hint=hint,
            rule=f"schema.{rule or kind}",
        )

    where = f" in {format_path(path)}" if path else ""

    if kind == "additionalProperties":
        allowed = list(sub.get("properties", {}))
        out = []
        for key in error.instance:
            if key in allowed:
                continue
            hint = did_you_mean(key, allowed) or (
                f"allowed keys{where}: {', '.join(allowed)}" if allowed else ""
            )
            out.append(
                at(
                    path + (key,),
                    f"unknown key {key!r}{where}",
                    hint,
                    "unknown-key",
                    document.keys.get(path + (key,)),
                )
            )
        return out

    if kind == "required":
        out = []
        for prop in error.validator_value:
            if error.message != f"{prop!r} is a required property":
                continue
            described = sub.get("properties", {}).get(prop, {}).get("description", "")
            hint = sub.get("x-hint") or (f"{prop}: {described}" if described else "")
            span = document.keys.get(path) or Span(document.file, 1, 1)
            out.append(at(path, f"missing required key {prop!r}{where}", hint, "missing-key", span))
        return out

    if kind in ("oneOf", "anyOf"):
        branch = _branch_for_type(error)
        if branch:
            return [d for e in branch for d in _explain(e, document)]
        if "x-message" in sub:
            hint = ""
            if isinstance(error.instance, dict) and {"repo", "path"} <= error.instance.keys():
                hint = "remove either `repo` or `path`"
            return [
                at(
                    path,
                    sub["x-message"],
                    hint,
                    "one-of",
                    document.keys.get(path) or document.values.get(path),
                )
            ]
        allowed = _types(
            [t for b in error.validator_value for t in _listify(b.get("type", "string"))]
        )
        return [
            at(
                path,
                f"expected {allowed}{where}, got {_describe(error.instance)}",
                sub.get("description", ""),
                "type",
                document.values.get(path),
            )
        ]

    if kind == "type":
        value_span = document.values.get(path) or document.where(path)
        return [
            at(
                path,
                f"expected {_types(error.validator_value)}{where}, got {_describe(error.instance)}",
                _type_hint(error, value_span, sub),
                "type",
                value_span,
            )
        ]

    if kind == "pattern":
        key = error.instance
        # propertyNames errors carry the offending key as the instance, with the parent's path.
        parent_path = path
        if error.relative_schema_path and "propertyNames" in error.relative_schema_path:
            span = document.keys.get(path + (key,))
            # vLLM's Python names (enable_prefix_caching) for its flags (enable-prefix-caching).
            dashed = str(key).replace("_", "-").lower().lstrip("-")
            meant = dashed != key and re.search(error.validator_value, dashed)
            return [
                at(
                    path + (key,),
                    f"invalid name {key!r}{where}",
                    f"did you mean {dashed!r}? " * bool(meant) + sub.get("x-hint", ""),
                    "pattern",
                    span,
                )
            ]
        name = format_path(parent_path) or "value"
        shown = repr(error.instance)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        return [
            at(
                path,
                f"invalid {name}: {shown}",
                _closest_example(error.instance, sub.get("examples", ()))
                + sub.get("x-hint", f"must match {error.validator_value}"),
                "pattern",
                document.values.get(path),
            )
        ]

    if kind in ("maxItems", "maxProperties", "maxLength") and isinstance(
        error.instance, (list, dict, str)
    ):
        name = format_path(path) or "the file"
        what = {"maxItems": "items", "maxProperties": "entries", "maxLength": "characters"}[kind]
        hint = sub.get("x-hint") or (
            "split them across deployments" if kind != "maxLength" else "shorten it"
        )
        return [
            at(
                path,
                f"{name} has {len(error.instance):,} {what}; at most "
                f"{error.validator_value:,} are allowed",
                hint,
                kind,
                document.keys.get(path) or document.values.get(path),
            )
        ]

    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        hint = (
            did_you_mean(str(error.instance), [str(o) for o in options])
            or f"use one of: {', '.join(map(str, options))}"
        )
        return [
            at(
                path,
                f"{error.instance!r} is not allowed{where}",
                hint,
                kind,
                document.values.get(path),
            )
        ]

    if kind == "dependentRequired":
        out = []
        for prop, needs in error.validator_value.items():
            if isinstance(error.instance, dict) and prop in error.instance:
                for need in needs:
                    if need not in error.instance:
                        out.append(
                            at(
                                path + (prop,),
                                f"{prop!r} only applies together with {need!r}{where}",
                                f"add `{need}`, or remove `{prop}`",
                                "depends",
                                document.keys.get(path + (prop,)),
                            )
                        )
        return out

    hint = sub.get("x-hint") or sub.get("description", "")
    return [at(path, f"{error.message}{where}", hint, kind, document.values.get(path))]


def _closest_example(value: Any, examples: Sequence[str]) -> str:
    """`did you mean 'L40S:2'? ` for a value that fails a pattern whose accepted names are its
    `examples` (GPU types), the part after a ':' kept; '' when none is close, or when the name
    is one of them and the rest is what is wrong."""
    import difflib

    if not isinstance(value, str) or not examples:
        return ""
    head, colon, rest = value.partition(":")
    by_upper = {example.upper(): example for example in examples}
    if head.upper() in by_upper:
        return ""
    close = difflib.get_close_matches(head.upper(), list(by_upper), n=1, cutoff=0.6)
    return f"did you mean {by_upper[close[0]] + colon + rest!r}? " if close else ""


def _branch_for_type(error) -> list:
    """For a oneOf whose alternatives differ by type (e.g. gpu: "A10G" or {type, count}), the errors
    of the one alternative of the instance's own type; a mismatch elsewhere is not the problem."""
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.TYPE_CHECKER
    matching = []
    for index, branch in enumerate(error.validator_value):
        declared = branch.get("type")
        if declared is None and "const" in branch:
            declared = type(branch["const"]).__name__.replace("str", "string")
        if declared is None:
            return []  # alternatives not told apart by type: let x-message explain
        types = [declared] if isinstance(declared, str) else declared
        if any(checker.is_type(error.instance, t) for t in types):
            matching.append(index)
    if len(matching) != 1:
        return []
    return [
        e
        for e in error.context
        if e.relative_schema_path and e.relative_schema_path[0] == matching[0]
    ]


_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _listify(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


def _types(expected: Any) -> str:
    names = [_TYPE_NAMES.get(t, t) for t in ([expected] if isinstance(expected, str) else expected)]
    return " or ".join(names)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _type_hint(error, span: Span, sub: dict) -> str:
    expected = error.validator_value
    wants_string = expected == "string" or (isinstance(expected, list) and "string" in expected)
    if wants_string and span.raw is not None and not isinstance(error.instance, str):
        return (
            f"YAML reads the unquoted {span.raw} as {_describe(error.instance)}; write it in "
            f'quotes: "{span.raw}"'
        )
    if error.instance is None and span.raw is not None:
        return "the value is empty; write it after the ':' or remove the key"
    return sub.get("x-hint") or sub.get("description", "")
