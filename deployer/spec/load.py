"""Read deployment YAML into plain Python values, remembering where every key and value was written.

PyYAML's composer gives us a node graph with positions; we build the values ourselves from it so
that we can (a) report duplicate keys, which `yaml.safe_load` silently drops, (b) bound alias
expansion and nesting depth, so a hostile file cannot exhaust memory, and (c) keep the line and
column of everything for diagnostics.

`_defaults.yaml` in a deployments folder is deep-merged under every deployment in that folder:
mappings merge key by key, anything else (scalars, lists) is replaced by the deployment's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from deployer.core.budget import once
from deployer.core.diagnostics import Diagnostic, JsonPath
from deployer.core.limits import MAX_INTEGER, MAX_NODES, MAX_YAML_BYTES, MAX_YAML_DEPTH

DEFAULTS_FILE = "_defaults.yaml"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class Span:
    """Where something was written. `raw` is the scalar exactly as typed when it was unquoted."""

    file: str
    line: int
    column: int
    raw: str | None = None


@dataclass(frozen=True)
class Document:
    """One YAML file's content with the position of each key and each value, by JSON path."""

    file: str
    data: Any
    keys: dict[JsonPath, Span] = field(default_factory=dict)
    values: dict[JsonPath, Span] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # every file that contributed (the deployment, then its defaults)

    def where(self, path: JsonPath) -> Span:
        """The most precise position known for `path`: its key, its value, or the nearest parent."""
        path = tuple(path)
        while path:
            span = self.keys.get(path) or self.values.get(path)
            if span:
                return span
            path = path[:-1]
        return self.values.get((), Span(self.file, 1, 1))


class _LoadError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


def load_file(
    path: Path | str, display: str | None = None
) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML file. Returns the document (None if unusable) and every problem found."""
    display = display or str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)  # never more: the size limit is checked on this
    except OSError as exc:
        return None, [
            Diagnostic(display, 0, 0, f"cannot read file: {exc.strerror}", rule="yaml.unreadable")
        ]
    return load_bytes(raw, display)


def load_bytes(raw: bytes, display: str) -> tuple[Document | None, list[Diagnostic]]:
    if len(raw) > MAX_YAML_BYTES:
        return None, [
            Diagnostic(
                display,
                0,
                0,
                f"file is {len(raw):,} bytes; deployment files are limited to {MAX_YAML_BYTES:,}",
                hint="a deployment is a few dozen lines; split it, or check that this is the "
                "right file",
                rule="yaml.too-large",
            )
        ]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position_of_byte(raw, exc.start)
        return None, [
            Diagnostic(
                display,
                line,
                column,
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                hint="save the file as UTF-8",
                rule="yaml.encoding",
            )
        ]
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line, column = _position_of_char(text, text.index("\x00"))
        return None, [
            Diagnostic(
                display,
                line,
                column,
                "file contains a NUL character",
                hint="this looks like a binary file; deployments are YAML text",
                rule="yaml.encoding",
            )
        ]

    builder = _Builder(display)
    try:
        node = _compose_single(text, display)
        data = builder.build(node, ()) if node is not None else None
    except _LoadError as exc:
        return None, builder.diagnostics + [exc.diagnostic]
    except yaml.MarkedYAMLError as exc:
        return None, builder.diagnostics + [_yaml_error(exc, display)]
    except yaml.YAMLError as exc:  # unmarked errors: rare, but never a traceback
        return None, builder.diagnostics + [
            Diagnostic(display, 1, 1, f"invalid YAML: {exc}", rule="yaml.syntax")
        ]
    except RecursionError:
        return None, builder.diagnostics + [_too_deep(display, Span(display, 1, 1))]
    return Document(display, data, builder.keys, builder.values, (display,)), builder.diagnostics


def _compose_single(text: str, display: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        node = loader.get_node() if loader.check_node() else None
        if loader.check_node():
            extra = loader.get_node()
            mark = extra.start_mark
            raise _LoadError(
                Diagnostic(
                    display,
                    mark.line + 1,
                    mark.column + 1,
                    "file holds more than one YAML document ('---' separates documents)",
                    hint="put one deployment in each file; remove the '---' line or move the "
                    "rest to a new file",
                    rule="yaml.multiple-documents",
                )
            )
        return node
    finally:
        loader.dispose()


class _Builder:
    """Turns a composed node graph into plain values, recording positions and problems."""

    def __init__(self, file: str):
        self.file = file
        self.keys: dict[JsonPath, Span] = {}
        self.values: dict[JsonPath, Span] = {}
        self.diagnostics: list[Diagnostic] = []
        self.nodes_built = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def span(self, node: yaml.Node) -> Span:
        raw = node.value if isinstance(node, yaml.ScalarNode) and not node.style else None
        return Span(self.file, node.start_mark.line + 1, node.start_mark.column + 1, raw)

    def build(self, node: yaml.Node, path: JsonPath, depth: int = 0) -> Any:
        self._count(node)
        if depth > MAX_YAML_DEPTH:
            raise _LoadError(_too_deep(self.file, self.span(node)))
        self.values.setdefault(path, self.span(node))
        if isinstance(node, yaml.MappingNode):
            self._require_tag(node, "map")
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            self._require_tag(node, "seq")
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _count(self, node: yaml.Node) -> None:
        """Count work done on nodes, merge keys and aliases included: the bound on hostile files."""
        self.nodes_built += 1
        if self.nodes_built > MAX_NODES:
            span = self.span(node)
            raise _LoadError(
                Diagnostic(
                    self.file,
                    span.line,
                    span.column,
                    f"file expands to more than {MAX_NODES:,} values (aliases are expanded "
                    "each time they are used)",
                    hint="this looks like an alias bomb; deployments never need nested aliases",
                    rule="yaml.too-many-nodes",
                )
            )

    def _require_tag(self, node: yaml.Node, kind: str) -> None:
        if node.tag != _YAML_TAG + kind:
            span = self.span(node)
            raise _LoadError(
                Diagnostic(
                    self.file,
                    span.line,
                    span.column,
                    f"unsupported YAML tag {node.tag!r}",
                    hint="remove the tag; deployments use plain mappings, lists and scalars",
                    rule="yaml.tag",
                )
            )

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            span = self.span(node)
            raise _LoadError(
                Diagnostic(
                    self.file,
                    span.line,
                    span.column,
                    f"cannot read value: {exc.problem}",
                    hint="quote the value to make it a plain string",
                    rule="yaml.tag",
                )
            )
        except ValueError as exc:
            if not node.tag.endswith(":int"):  # e.g. an impossible date such as 2020-13-45
                span = self.span(node)
                raise _LoadError(
                    Diagnostic(
                        self.file,
                        span.line,
                        span.column,
                        f"cannot read value: {exc}",
                        hint="quote the value to make it a plain string",
                        rule="yaml.tag",
                    )
                ) from None
            value = MAX_INTEGER  # Python refuses integers of more than 4300 digits
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INTEGER:
            # No setting takes a number this large; bigger ones break printing and float arithmetic.
            span = self.span(node)
            self.diagnostics.append(
                Diagnostic(
                    self.file,
                    span.line,
                    span.column,
                    "number too large (2**63 or more)",
                    hint="no deployment setting takes a number this large; check for a typo",
                    rule="yaml.number-too-large",
                )
            )
        if isinstance(value, (bytes, set)) or not isinstance(
            value, (str, int, float, bool, type(None))
        ):
            if node.tag in (_YAML_TAG + "timestamp",):
                return str(
                    node.value
                )  # stays a string; the schema decides whether a date belongs there
            span = self.span(node)
            raise _LoadError(
                Diagnostic(
                    self.file,
                    span.line,
                    span.column,
                    f"unsupported YAML tag {node.tag!r}",
                    hint="quote the value to make it a plain string",
                    rule="yaml.tag",
                )
            )
        if isinstance(value, str) and "\x00" in value:
            # An escaped NUL ("\0", "\x00", "\u0000"): no command line, environment variable or
            # file name can carry it, so the container would fail where it is used.
            span = self.span(node)
            self.diagnostics.append(
                Diagnostic(
                    self.file,
                    span.line,
                    span.column,
                    "this string holds a NUL character (an escape such as \\0, \\x00 or \\u0000)",
                    hint="remove it: a NUL cannot pass through a command line or an "
                    "environment variable",
                    rule="yaml.nul",
                )
            )
        return value

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict:
        result: dict[str, Any] = {}
        first_seen: dict[str, Span] = {}
        for key_node, value_node in self._merged_pairs(node):
            key_span = self.span(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        key_span.line,
                        key_span.column,
                        "a key must be a plain name, not a list or mapping",
                        path=path,
                        rule="yaml.key-type",
                    )
                )
                continue
            key = self._scalar(key_node)
            if not isinstance(key, str):
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        key_span.line,
                        key_span.column,
                        f"key {key_node.value!r} is read by YAML as {type(key).__name__} "
                        f"{key!r}, not as a name",
                        path=path,
                        hint=f'quote it: "{key_node.value}":',
                        rule="yaml.key-type",
                    )
                )
                key = str(key_node.value)
            if key in first_seen:
                first = first_seen[key]
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        key_span.line,
                        key_span.column,
                        f"duplicate key {key!r} (first set on line {first.line}); YAML "
                        "would silently keep only the last value",
                        path=path + (key,),
                        hint="remove one of the two, or merge their contents",
                        rule="yaml.duplicate-key",
                    )
                )
                continue
            first_seen[key] = key_span
            self.keys[path + (key,)] = key_span
            result[key] = self.build(value_node, path + (key,), depth + 1)
        return result

    def _merged_pairs(self, node: yaml.MappingNode) -> Iterable[tuple[yaml.Node, yaml.Node]]:
        """Resolve YAML merge keys (`<<: *anchor`): explicit keys win over merged ones."""
        explicit = [(k, v) for k, v in node.value if k.tag != _YAML_TAG + "merge"]
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        names = {k.value for k, _ in explicit if isinstance(k, yaml.ScalarNode)}
        for key_node, value_node in node.value:
            if key_node.tag != _YAML_TAG + "merge":
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                self._count(source)
                if not isinstance(source, yaml.MappingNode):
                    span = self.span(source)
                    raise _LoadError(
                        Diagnostic(
                            self.file,
                            span.line,
                            span.column,
                            "'<<' merges mappings only",
                            hint="point '<<' at an anchored mapping (`<<: *name`)",
                            rule="yaml.merge",
                        )
                    )
                for k, v in self._merged_pairs(source):
                    self._count(k)
                    if isinstance(k, yaml.ScalarNode) and k.value not in names:
                        names.add(k.value)
                        merged.append((k, v))
        return explicit + merged


def _too_deep(file: str, span: Span) -> Diagnostic:
    return Diagnostic(
        file,
        span.line,
        span.column,
        f"nesting deeper than {MAX_YAML_DEPTH} levels",
        hint="deployments are a few levels deep; check the indentation",
        rule="yaml.too-deep",
    )


_YAML_HINTS = [
    ("tab character", "YAML indents with spaces, not tabs: replace the tab with spaces"),
    ("'\\t'", "YAML indents with spaces, not tabs: replace the tab with spaces"),
    ("found duplicate anchor", "give each anchor (&name) a distinct name"),
    ("found undefined alias", "define the anchor (&name) before using it as an alias (*name)"),
    (
        "mapping values are not allowed here",
        "a value containing ': ' must be quoted, or a key is mis-indented",
    ),
    ("expected <block end>", "check the indentation of this line against the lines above it"),
    ("could not find expected ':'", "a key is missing its ':' or a quoted string is not closed"),
    ("found unexpected end of stream", "a quoted string or bracket is not closed"),
    ("while scanning a quoted scalar", "close the quoted string"),
    (
        "found character that cannot start any token",
        "quote the value: some characters (like ` or @) cannot start a plain YAML scalar",
    ),
]


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    context = f" ({exc.context})" if exc.context else ""
    full = f"{problem}{context}"
    hint = next((h for needle, h in _YAML_HINTS if needle in full), "")
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Diagnostic(file, line, column, f"invalid YAML: {full}", hint=hint, rule="yaml.syntax")


def _position_of_byte(raw: bytes, offset: int) -> tuple[int, int]:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return line, column


def _position_of_char(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


# ---------------------------------------------------------------------------------------------
# Defaults


def _positions_under(table: dict[JsonPath, Span]) -> dict[JsonPath, list[JsonPath]]:
    index: dict[JsonPath, list[JsonPath]] = {}
    for p in table:
        for depth in range(len(p) + 1):
            index.setdefault(p[:depth], []).append(p)
    return index


def merge_defaults(
    defaults: Document | None,
    document: Document,
    alternatives: dict[JsonPath, tuple[frozenset, ...]] | None = None,
) -> Document:
    """Deep-merge `defaults` under `document`; positions follow each value to the file it came from.

    `alternatives` names, per mapping path, groups of keys that are alternatives to each other
    (a Hub `repo` + `revision`, or a local `path`): when the document sets a key of one group,
    the defaults' keys of the other groups are not merged in, so choosing one is enough.
    """
    if (
        defaults is None
        or not isinstance(defaults.data, dict)
        or not isinstance(document.data, dict)
    ):
        return document
    keys: dict[JsonPath, Span] = {}
    values: dict[JsonPath, Span] = {}

    # Every position under a path, found at once: scanning each table per merged key is
    # quadratic (half a minute for 10,000 keys in a defaults mapping).
    under = {id(table): _positions_under(table) for table in (document.keys, document.values)}
    for table in (defaults.keys, defaults.values):  # the same defaults for every file of a folder
        under[id(table)] = once(
            ("positions under", id(table)), lambda table=table: _positions_under(table)
        )

    def take(doc: Document, path: JsonPath) -> None:
        for table, into in ((doc.keys, keys), (doc.values, values)):
            for p in under[id(table)].get(path, ()):
                into.setdefault(p, table[p])

    def merge(base: Any, over: Any, path: JsonPath) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = {}
            chosen = [g for g in (alternatives or {}).get(path, ()) if g & over.keys()]
            if chosen:
                dropped = set().union(*(alternatives or {})[path]) - set().union(*chosen)
                base = {k: v for k, v in base.items() if k not in dropped}
            for key in list(over) + [k for k in base if k not in over]:
                if key in over and key in base:
                    keys.setdefault(path + (key,), document.keys[path + (key,)])
                    out[key] = merge(base[key], over[key], path + (key,))
                elif key in over:
                    take(document, path + (key,))
                    out[key] = over[key]
                else:
                    take(defaults, path + (key,))
                    out[key] = base[key]
            values.setdefault(path, document.values.get(path, Span(document.file, 1, 1)))
            return out
        take(document, path)
        return over

    data = merge(defaults.data, document.data, ())
    return Document(document.file, data, keys, values, document.sources + defaults.sources)
