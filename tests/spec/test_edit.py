"""Adding and removing an adapter in a deployment file's text: only the entry's lines change."""

from __future__ import annotations

import pytest
import yaml

from deployer.spec.edit import EditRefused, Entry, add_adapter, remove_adapter

HEAD = "# yaml-language-server: $schema=../deployer/deployment.schema.json\n\n"
BLOCK = (
    HEAD
    + """\
base_model:
  repo: Qwen/Qwen3-4B-Instruct-2507   # the base every adapter was trained on

adapters:
  # chess first: it takes most of the traffic
  - name: chess
    repo: org/chess-lora      # retrained weekly

  # sql, pinned while we evaluate v2
  - name: sql
    repo: org/sql-lora
    revision: v1
  # - name: old
  #   repo: org/old-lora

gpu: A10G   # 24 GB
"""
)
FLOW = "base_model: {repo: a/b}\nadapters: [{name: chess, repo: org/chess-lora}]\ngpu: A10G\n"
FLOW_ON_LINES = """\
base_model: {repo: a/b}
adapters: [
  {name: chess, repo: org/chess-lora},  # the first
  {name: sql, repo: org/sql-lora},
]
gpu: A10G
"""
FLOW_ITEMS = """\
base_model: {repo: a/b}
adapters:
- {name: chess, repo: org/chess-lora}
- {name: sql, repo: org/sql-lora}
gpu: A10G
"""
NONE = "base_model:\n    repo: a/b\n\ngpu: A10G\n# the end\n"
EMPTY = "base_model: {repo: a/b}\nadapters: []   # none yet\ngpu: A10G\n"
SHAPES = {
    "block list": BLOCK,
    "flow list": FLOW,
    "flow list without a final line break": FLOW.rstrip("\n"),
    "flow list, an entry a line": FLOW_ON_LINES,
    "block list of flow mappings": FLOW_ITEMS,
    "no adapters": NONE,
    "no adapters, no final line break": NONE.rstrip("\n"),
    "no adapters, blank lines at the end": NONE + "\n\n",
    "empty flow list": EMPTY,
    "block list, CRLF line endings": BLOCK.replace("\n", "\r\n"),
    "block list without a final line break": BLOCK.rstrip("\n").removesuffix("gpu: A10G   # 24 GB"),
}
ENTRIES = [
    Entry("new", repo="org/new-lora"),
    Entry("pinned", repo="org/new-lora", revision="1.0"),
    Entry("local", path="../adapters/my adapter"),
]


def values(text: str):
    return yaml.safe_load(text)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_add_then_remove_gives_back_the_original_byte_for_byte(text, entry):
    added = add_adapter(text, entry)
    assert values(added)["adapters"][-1] == entry.data()
    assert remove_adapter(added, entry.name) == text


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_adding_keeps_every_comment_and_every_line_but_the_list_s_last(text):
    added = add_adapter(text, Entry("new", repo="org/new-lora"))
    comments = [line[line.index("#") :] for line in text.splitlines() if "#" in line]
    assert comments == [line[line.index("#") :] for line in added.splitlines() if "#" in line]
    new_lines = set(added.splitlines()) - set(text.splitlines())
    assert all("new" in line or line == "adapters:" for line in new_lines)


def test_a_block_entry_copies_the_indentation_and_keeps_every_comment():
    added = add_adapter(BLOCK, Entry("new", repo="org/new-lora"))
    assert added == BLOCK.replace(
        "    revision: v1\n", "    revision: v1\n  - name: new\n    repo: org/new-lora\n"
    )


def test_a_flow_list_gets_a_flow_entry():
    added = add_adapter(FLOW, Entry("new", repo="org/new-lora"))
    assert "[{name: chess, repo: org/chess-lora}, {name: new, repo: org/new-lora}]" in added


def test_a_flow_list_written_an_entry_a_line_gets_a_line():
    added = add_adapter(FLOW_ON_LINES, Entry("new", repo="org/new-lora"))
    assert "  {name: sql, repo: org/sql-lora},\n  {name: new, repo: org/new-lora},\n]" in added


def test_a_block_list_of_flow_mappings_gets_a_flow_mapping():
    added = add_adapter(FLOW_ITEMS, Entry("new", repo="org/new-lora"))
    assert "- {name: sql, repo: org/sql-lora}\n- {name: new, repo: org/new-lora}\n" in added


def test_a_file_without_adapters_gets_a_block_list_at_its_end_in_its_own_indentation():
    added = add_adapter(NONE, Entry("new", repo="org/new-lora"))
    assert added == NONE + "\nadapters:\n    - name: new\n      repo: org/new-lora\n"


def test_crlf_endings_stay_crlf():
    added = add_adapter(BLOCK.replace("\n", "\r\n"), Entry("new", repo="org/new-lora"))
    assert "\n" not in added.replace("\r\n", "")


def test_values_that_yaml_would_read_otherwise_are_quoted():
    added = add_adapter(FLOW, Entry("v", repo="org/x", revision="1.10"))
    assert values(added)["adapters"][-1]["revision"] == "1.10"
    added = add_adapter(BLOCK, Entry("yes", path="a: b, [c] # d"))
    assert values(added)["adapters"][-1] == {"name": "yes", "path": "a: b, [c] # d"}


def test_a_taken_name_is_refused():
    with pytest.raises(EditRefused, match="'sql' is already declared"):
        add_adapter(BLOCK, Entry("sql", repo="org/other"))


def test_removing_an_undeclared_adapter_is_refused():
    with pytest.raises(EditRefused, match="no adapter named 'nope'"):
        remove_adapter(BLOCK, "nope")


def test_removing_an_entry_takes_its_lines_and_keeps_the_comments_around_it():
    removed = remove_adapter(BLOCK, "chess")
    assert "chess" not in removed.replace("# chess first", "")
    assert (
        "# chess first" in removed and "# sql, pinned" in removed and "#   repo: org/old" in removed
    )
    assert values(removed)["adapters"] == [
        {"name": "sql", "repo": "org/sql-lora", "revision": "v1"}
    ]


def test_removing_the_last_adapter_removes_the_key_or_leaves_an_empty_list():
    one = "base_model: {repo: a/b}\nadapters:\n  - name: a\n    repo: o/a\ngpu: A10G\n"
    assert remove_adapter(one, "a") == "base_model: {repo: a/b}\ngpu: A10G\n"
    kept = remove_adapter(one, "a", keep_empty=True)  # defaults declare adapters
    assert values(kept)["adapters"] == []
    commented = one.replace("adapters:", "adapters:  # ours")
    assert remove_adapter(commented, "a").startswith(
        "base_model: {repo: a/b}\nadapters: []  # ours"
    )


def test_a_layout_not_edited_in_place_is_refused():
    aliased = "base_model: {repo: a/b}\nx: &list\n  - {name: a, repo: o/a}\nadapters: *list\n"
    with pytest.raises(EditRefused, match="by hand"):
        add_adapter(aliased, Entry("new", repo="org/new"))


def test_a_file_that_does_not_load_is_refused():
    with pytest.raises(EditRefused, match="does not read as YAML cleanly"):
        add_adapter("adapters: [\n", Entry("new", repo="org/new"))
