"""The YAML loader: values, positions, duplicate keys, limits, and defaults merging."""

from __future__ import annotations

from deployer.spec.load import MAX_NODES, Span, load_bytes, merge_defaults


def load(text: str, name: str = "d.yaml"):
    return load_bytes(text.encode(), name)


def test_values_and_positions_of_keys_and_values():
    doc, problems = load("a: 1\nb:\n  - x\n  - {c: true}\n")
    assert problems == []
    assert doc.data == {"a": 1, "b": ["x", {"c": True}]}
    assert doc.keys[("b",)] == Span("d.yaml", 2, 1, "b")
    assert doc.values[("b", 1, "c")].line == 4
    assert doc.values[("b", 1, "c")].column == 9


def test_unquoted_scalars_keep_their_raw_text_and_quoted_ones_do_not():
    doc, _ = load('v: 0.10\nq: "0.10"\n')
    assert doc.data == {"v": 0.1, "q": "0.10"}
    assert doc.values[("v",)].raw == "0.10"
    assert doc.values[("q",)].raw is None


def test_duplicate_key_is_reported_at_the_second_occurrence_and_first_value_kept():
    doc, problems = load("a: 1\nb: 2\na: 3\n")
    assert [(p.line, p.column, p.rule) for p in problems] == [(3, 1, "yaml.duplicate-key")]
    assert "first set on line 1" in problems[0].message


def test_duplicate_keys_in_nested_mappings_are_all_reported():
    _, problems = load("x:\n  k: 1\n  k: 2\ny:\n  - {m: 1, m: 2}\n")
    assert [(p.line, p.path) for p in problems] == [(3, ("x", "k")), (5, (("y", 0, "m")))]


def test_alias_bomb_is_rejected_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghij":
        prev = chr(ord(level) - 1)
        bomb += (
            f"{level}: &{level} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, "
            f"*{prev}, *{prev}, *{prev}, *{prev}]\n"
        )
    doc, problems = load(bomb)
    assert doc is None
    assert problems[0].rule == "yaml.too-many-nodes"
    assert f"{MAX_NODES:,}" in problems[0].message


def test_merge_keys_are_resolved_and_explicit_keys_win():
    doc, problems = load("base: &b {gpu: A10G, n: 1}\nd:\n  <<: *b\n  n: 2\n")
    assert problems == []
    assert doc.data["d"] == {"n": 2, "gpu": "A10G"}


def test_non_string_key_is_reported_with_a_quoting_hint():
    _, problems = load("yes: 1\n")
    assert problems[0].rule == "yaml.key-type"
    assert 'quote it: "yes":' in problems[0].hint


def test_invalid_utf8_points_at_the_byte():
    doc, problems = load_bytes(b"a: 1\nb: \xff\n", "d.yaml")
    assert doc is None
    assert (problems[0].line, problems[0].column, problems[0].rule) == (2, 4, "yaml.encoding")


def test_oversized_file_is_refused_without_parsing():
    doc, problems = load_bytes(b"a: " + b"x" * (1024 * 1024 + 1), "big.yaml")
    assert doc is None and problems[0].rule == "yaml.too-large"


def test_deep_nesting_is_refused():
    doc, problems = load("a: " + "[" * 200 + "]" * 200 + "\n")
    assert doc is None and problems[0].rule == "yaml.too-deep"


def test_python_object_tags_are_refused():
    doc, problems = load("a: !!python/object/apply:os.system ['echo hi']\n")
    assert doc is None and problems[0].rule == "yaml.tag"


def test_dates_stay_the_string_the_user_wrote():
    doc, _ = load("revision: 2024-01-01\n")
    assert doc.data == {"revision": "2024-01-01"}


def test_defaults_merge_under_the_document_and_positions_follow_their_file():
    defaults, _ = load_bytes(
        b"vllm:\n  version: '0.11.2'\n  args: {enforce-eager: true}\nimage: {python: '3.12'}\n",
        "_defaults.yaml",
    )
    doc, _ = load("vllm:\n  args: {max-model-len: 4096}\nimage: {python: '3.11'}\n")
    merged = merge_defaults(defaults, doc)
    assert merged.data == {
        "vllm": {"args": {"max-model-len": 4096, "enforce-eager": True}, "version": "0.11.2"},
        "image": {"python": "3.11"},
    }
    assert merged.where(("vllm", "version")).file == "_defaults.yaml"
    assert merged.where(("vllm", "args", "max-model-len")).file == "d.yaml"
    assert merged.values[("image", "python")] == Span("d.yaml", 3, 17, None)
    assert merged.sources == ("d.yaml", "_defaults.yaml")


def test_lists_in_a_deployment_replace_the_defaults_list():
    defaults, _ = load_bytes(b"image: {pip: [a, b]}\n", "_defaults.yaml")
    doc, _ = load("image: {pip: [c]}\n")
    assert merge_defaults(defaults, doc).data == {"image": {"pip": ["c"]}}
