"""Add or remove one adapter in a deployment file's text, changing nothing else.

Only the lines of the entry added or removed change: every comment, blank line, quote and
indentation elsewhere stays as written, so adding an adapter then removing it gives back the
original text. The new entry copies the style of the list's last entry (a block or flow list,
block or flow mappings, their indentation); a file without `adapters:` gets a block list at
its end. The positions come from PyYAML's pure-Python composer, whose marks count characters in
the text (the C loader counts bytes); every edit is then read back, and unless the values are
exactly the old ones with the entry added or removed, it is refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml

from deployer.spec.load import load_bytes

ADAPTERS = "adapters"
# Line breaks PyYAML knows beyond \n, \r\n and \r; lines are cut at those three only.
_OTHER_BREAKS = ("\x85", "\u2028", "\u2029")
_PLAIN = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/-]*")
_BY_HAND = "edit the file by hand"
# A comma ending a flow list's entry, and the rest of its line: spaces, perhaps a comment.
_TRAILING_COMMA = re.compile(r"[ \t]*,[ \t]*(?:#[^\r\n]*)?(?=\r|\n|$)")


class EditRefused(Exception):
    """The edit cannot be made to this text; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One adapter as the command line gives it: a Hub repo (and revision) or a local path."""

    name: str
    repo: str | None = None
    revision: str | None = None
    path: str | None = None

    def fields(self) -> list[tuple[str, str]]:
        pairs = [("name", self.name), ("repo", self.repo), ("revision", self.revision)]
        return [(key, value) for key, value in pairs + [("path", self.path)] if value is not None]

    def data(self) -> dict[str, str]:
        return dict(self.fields())


def add_adapter(text: str, entry: Entry) -> str:
    """`text` with `entry` appended to its adapters. Raises EditRefused."""
    data = _values(text)
    adapters = data.get(ADAPTERS)
    if adapters is not None and not isinstance(adapters, list):
        raise EditRefused(f"`{ADAPTERS}:` is not a list; {_BY_HAND}")
    if entry.name in [a.get("name") for a in adapters or [] if isinstance(a, dict)]:
        raise EditRefused(f"an adapter named {entry.name!r} is already declared")
    root, key, value = _adapters_node(text)
    if key is None:
        edited = _append_block(text, root, entry)
    elif not isinstance(value, yaml.SequenceNode) or value.start_mark.index < key.end_mark.index:
        raise EditRefused(f"`{ADAPTERS}:` is not written as a list here; {_BY_HAND}")
    elif value.flow_style:
        edited = _add_to_flow(text, value, entry)
    else:
        edited = _add_to_block(text, value, entry)
    expected = {**data, ADAPTERS: [*(adapters or []), entry.data()]}
    _same_values(edited, expected)
    return edited


def remove_adapter(text: str, name: str, keep_empty: bool = False) -> str:
    """`text` without the adapter `name`. Removing the last one removes `adapters:` too, unless
    `keep_empty` (a defaults file declares adapters, which the file's `[]` must keep out) or the
    key's line holds a comment. Raises EditRefused."""
    data = _values(text)
    adapters = data.get(ADAPTERS)
    names = [a.get("name") if isinstance(a, dict) else None for a in adapters or []]
    if not isinstance(adapters, list) or name not in names:
        raise EditRefused(f"no adapter named {name!r} is declared in this file")
    index = names.index(name)
    root, key, value = _adapters_node(text)
    if not isinstance(value, yaml.SequenceNode) or value.start_mark.index < key.end_mark.index:
        raise EditRefused(f"`{ADAPTERS}:` is not written as a list here; {_BY_HAND}")
    rest = adapters[:index] + adapters[index + 1 :]
    expected = {**data, ADAPTERS: rest}
    if value.flow_style:
        edited = _remove_from_flow(text, value, index)
    elif rest:
        edited = _remove_lines(text, *_item_lines(text, value, index))
    else:
        edited, dropped = _remove_block_list(text, key, value, keep_empty)
        if dropped:
            expected = {k: v for k, v in data.items() if k != ADAPTERS}
    _same_values(edited, expected)
    return edited


# -- reading ---------------------------------------------------------------------------------------


def _values(text: str) -> dict:
    if any(b in text for b in _OTHER_BREAKS):
        raise EditRefused(
            "the file holds a Unicode line separator (U+0085, U+2028 or U+2029); only \\n, "
            f"\\r\\n and \\r line endings are edited in place; {_BY_HAND}"
        )
    document, problems = load_bytes(text.encode("utf-8"), "file")
    if document is None or problems:
        first = problems[0] if problems else None
        where = f" (line {first.line}: {first.message})" if first else ""
        raise EditRefused(f"the file does not read as YAML cleanly{where}; run `deployer validate`")
    if not isinstance(document.data, dict):
        raise EditRefused("the file is not a mapping of keys; run `deployer validate`")
    return document.data


def _adapters_node(text: str) -> tuple[yaml.MappingNode, yaml.Node | None, yaml.Node | None]:
    root = yaml.compose(text, Loader=yaml.SafeLoader)  # pure Python: marks count characters
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == ADAPTERS:
            return root, key, value
    return root, None, None


def _same_values(edited: str, expected: dict) -> None:
    try:
        got = _values(edited)
    except EditRefused:
        got = None
    if got != expected:
        raise EditRefused(
            f"this file's layout of `{ADAPTERS}:` is not one edited in place; {_BY_HAND}"
        )


# -- positions -------------------------------------------------------------------------------------


def _line_start(text: str, index: int) -> int:
    return max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1


def _next_line(text: str, index: int) -> int:
    """Where the line holding `index` ends, its line break included."""
    match = re.compile(r"\r\n|\r|\n").search(text, index)
    return match.end() if match else len(text)


def _newline(text: str) -> str:
    match = re.search(r"\r\n|\r|\n", text)
    return match.group() if match else "\n"


def _content_end(node: yaml.Node) -> int:
    """Where the written text of `node` ends: a block collection's marks run on to the next
    token, past comments and blank lines, so its end is that of its last child."""
    if isinstance(node, yaml.ScalarNode):
        if node.style in ("|", ">"):
            raise EditRefused(f"an adapter holds a block scalar (| or >); {_BY_HAND}")
        return node.end_mark.index
    if node.flow_style or not node.value:
        return node.end_mark.index
    last = node.value[-1]
    if isinstance(last, tuple):
        return max(_content_end(last[0]), _content_end(last[1]))
    return _content_end(last)


def _dash(text: str, item: yaml.Node) -> int:
    """The index of the `-` that starts a block list item, alone on its line but for spaces."""
    start = _line_start(text, item.start_mark.index)
    dash = text.rfind("-", start, item.start_mark.index)
    if dash < 0 or text[start:dash].strip(" ") or text[dash + 1 : item.start_mark.index].strip(" "):
        raise EditRefused(f"an adapter does not start its own `- ` line; {_BY_HAND}")
    return dash


def _item_lines(text: str, sequence: yaml.SequenceNode, index: int) -> tuple[int, int]:
    item = sequence.value[index]
    return _line_start(text, _dash(text, item)), _next_line(text, _content_end(item))


def _remove_lines(text: str, start: int, end: int) -> str:
    """`text` without the lines from `start` to `end`; when they end the file without a line
    break, the break before them goes too (the one added with them)."""
    if end == len(text) and not text.endswith(("\n", "\r")):
        start -= len(_break_before(text, start))
    return text[:start] + text[end:]


def _break_before(text: str, index: int) -> str:
    for newline in ("\r\n", "\n", "\r"):
        if text.endswith(newline, 0, index):
            return newline
    return ""


# -- writing ---------------------------------------------------------------------------------------


def _scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as the same string: plain when safe."""
    if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def _flow_entry(entry: Entry) -> str:
    return "{" + ", ".join(f"{key}: {_scalar(value)}" for key, value in entry.fields()) + "}"


def _block_entry(entry: Entry, first: str, indent: str, newline: str) -> str:
    lines = [f"{key}: {_scalar(value)}" for key, value in entry.fields()]
    return first + lines[0] + newline + "".join(f"{indent}{line}{newline}" for line in lines[1:])


def _insert_lines(text: str, at: int, lines: str, newline: str) -> str:
    """Insert whole `lines` at `at`, the start of a line or the end of a file without a final
    line break (then the break goes first, and the lines keep the file without one)."""
    if at == len(text) and text and not text.endswith(("\n", "\r")):
        lines = newline + lines[: -len(newline)]
    return text[:at] + lines + text[at:]


def _add_to_block(text: str, sequence: yaml.SequenceNode, entry: Entry) -> str:
    last = sequence.value[-1]
    dash = _dash(text, last)
    first = text[_line_start(text, dash) : last.start_mark.index]  # e.g. "  - "
    at = _next_line(text, _content_end(last))
    newline = _break_before(text, at) or _newline(text)
    if isinstance(last, yaml.MappingNode) and not last.flow_style:
        lines = _block_entry(entry, first, " " * len(first), newline)
    else:
        lines = first + _flow_entry(entry) + newline
    return _insert_lines(text, at, lines, newline)


def _append_block(text: str, root: yaml.Node, entry: Entry) -> str:
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise EditRefused(f"the file is not a block mapping of keys; {_BY_HAND}")
    dash_indent, item_indent = _list_indents(root)
    newline = _newline(text)
    first = " " * dash_indent + "-" + " " * (item_indent - dash_indent - 1)
    block = f"{ADAPTERS}:{newline}" + _block_entry(entry, first, " " * item_indent, newline)
    # After the last line that is not blank, a blank line above: trailing blank lines stay last.
    at = _next_line(text, len(text.rstrip()) - 1)
    return _insert_lines(text, at, newline + block, newline)


def _list_indents(root: yaml.MappingNode) -> tuple[int, int]:
    """(column of `-`, column of the item's keys) in the file's own block lists, if it has any;
    else its mappings' indentation."""
    nested = 2
    for key, value in root.value:
        if isinstance(value, yaml.SequenceNode) and not value.flow_style and value.value:
            dash = value.start_mark.column - key.start_mark.column
            return dash, dash + value.value[0].start_mark.column - value.start_mark.column
        if isinstance(value, yaml.MappingNode) and not value.flow_style and value.value:
            nested = value.start_mark.column - key.start_mark.column or nested
    return nested, nested + 2


def _add_to_flow(text: str, sequence: yaml.SequenceNode, entry: Entry) -> str:
    written = _flow_entry(entry)
    if not sequence.value:
        at = sequence.end_mark.index - 1
        if text[at] != "]":
            raise EditRefused(f"cannot find the end of `{ADAPTERS}: []`; {_BY_HAND}")
        return text[:at] + written + text[at:]
    last = sequence.value[-1]
    at = _content_end(last)
    start = _line_start(text, last.start_mark.index)
    own_line = not text[start : last.start_mark.index].strip()
    on_lines = sequence.start_mark.line != sequence.end_mark.line
    if own_line and on_lines:
        indent = text[start : last.start_mark.index]
        newline = _break_before(text, start) or _newline(text)
        if _TRAILING_COMMA.match(text, at):  # each entry on its line, a comma after each
            at = _next_line(text, at)
            return _insert_lines(text, at, indent + written + "," + newline, newline)
        separator = "," + newline + indent
    else:
        separator = ", "
    return text[:at] + separator + written + text[at:]


def _remove_from_flow(text: str, sequence: yaml.SequenceNode, index: int) -> str:
    items = sequence.value
    item = items[index]
    start = _line_start(text, item.start_mark.index)
    ending = _TRAILING_COMMA.match(text, _content_end(item))
    if not text[start : item.start_mark.index].strip() and ending:  # on lines of its own
        return _remove_lines(text, start, _next_line(text, ending.end()))
    if len(items) == 1:
        return text[: item.start_mark.index] + text[_content_end(item) :]
    if index > 0:
        before = _content_end(items[index - 1])
        if "#" not in text[before : item.start_mark.index]:
            return text[:before] + text[_content_end(item) :]
    if index + 1 < len(items):
        after = items[index + 1].start_mark.index
        if "#" not in text[_content_end(item) : after]:
            return text[: item.start_mark.index] + text[after:]
    raise EditRefused(f"comments sit on both sides of this adapter in a flow list; {_BY_HAND}")


def _remove_block_list(
    text: str, key: yaml.Node, sequence: yaml.SequenceNode, keep_empty: bool
) -> tuple[str, bool]:
    """Remove the only item of a block list, and `adapters:` with it (True) unless it must stay
    as `[]` (False). Where the list ended the file, the blank line above its key goes too (the
    one added with it)."""
    start, end = _item_lines(text, sequence, 0)
    key_line = _line_start(text, key.start_mark.index)
    key_end = _next_line(text, key.end_mark.index)
    after_colon = text[key.end_mark.index : key_end].rstrip("\r\n")
    if keep_empty or after_colon.strip(" :"):
        colon = text.index(":", key.end_mark.index) + 1
        kept = text[:colon] + " []" + text[colon:start] + text[end:]
        return kept, False
    if text[key_end:start].strip():  # comments between the key and the item stay
        return text[:key_line] + text[key_end:start] + text[end:], True
    if not text[end:].strip() and key_line > 0:
        above = _line_start(text, key_line - 1)
        if not text[above:key_line].strip():
            return _remove_lines(text, above, end), True
    return _remove_lines(text, key_line, end), True
