"""Adapter compatibility, on the tiny Qwen3 model and PEFT adapters built by tests/tiny_model.py."""

from __future__ import annotations

import json

import pytest

from deployer.checks.pipeline import check_paths

from ..tiny_model import build_base_model, build_lora_adapter


@pytest.fixture
def tiny(project):
    base = build_base_model(project.root / "models" / "tiny")

    def deploy(adapters: dict, version: str = "0.32.0"):
        entries = "\n".join(f"  - {{name: {name}, path: ../adapters/{name}}}" for name in adapters)
        project.deployment(
            "d",
            f"base_model: {{path: ../models/tiny, served_name: "
            f"tiny}}\nadapters:\n{entries}\ngpu: T4\nvllm: {{version: '{version}'}}\nauth: "
            "none\n",
        )
        return {
            d.rule: d
            for d in check_paths([project.deployments]).diagnostics
            if d.rule != "auth.public"
        }

    def adapter(name: str, base_model: str | None = None, edit=None, **kwargs):
        folder = build_lora_adapter(
            project.root / "adapters" / name,
            base_model or str(base),
            kwargs.pop("rank", 8),
            seed=1,
            **kwargs,
        )
        if edit:
            config = json.loads((folder / "adapter_config.json").read_text())
            edit(config)
            (folder / "adapter_config.json").write_text(json.dumps(config))
        return folder

    deploy.adapter = adapter
    deploy.base = base
    return deploy


def test_a_good_adapter_passes(tiny):
    tiny.adapter("good")
    assert tiny({"good": 1}) == {}


def test_dora_adapter_is_an_error(tiny):
    tiny.adapter("dora", edit=lambda c: c.update(use_dora=True))
    error = tiny({"dora": 1})["compat.dora"]
    assert (error.line, error.column) == (3, 5) and "vLLM does not serve DoRA" in error.message


def test_adapter_trained_on_another_base_is_an_error(tiny, project):
    other = build_base_model(project.root / "models" / "other", seed=7)
    tiny.adapter("foreign", base_model=str(other))
    error = tiny({"foreign": 1})["compat.base-mismatch"]
    assert f"was trained on {other}, not on the base model at ../models/tiny" in error.message


@pytest.mark.parametrize("trained_on", ["/etc", "/no/such/folder"])
def test_where_an_adapter_says_it_was_trained_outside_the_repository_is_not_looked_at(
    tiny, trained_on
):
    # An existing path on this machine (/etc) gave "was trained on /etc, not on ...", a missing one
    # nothing: the message told a pull request which paths exist where the deployer runs.
    tiny.adapter("elsewhere", base_model=trained_on)
    assert tiny({"elsewhere": 1}) == {}


def test_configs_beyond_the_runs_json_budget_are_errors_not_memory(tiny, monkeypatch):
    # 16 adapter folders holding one 4 MB config of [{}, {}, ...] (stored once by git) took 110 MB of memory each.
    from deployer.core import budget

    for name in ("a", "b", "c"):
        config = tiny.adapter(name) / "adapter_config.json"
    raw = config.read_bytes()
    monkeypatch.setattr(
        budget, "MAX_RUN_PARSED", 2 * budget.parsed_size(raw)
    )  # the adapters' configs are read first
    over = (
        [
            d
            for d in check_paths([tiny.base.parent.parent / "deployments"]).diagnostics
            if "MB of memory together" in d.message
        ]
        if tiny({"a": 1, "b": 1, "c": 1})
        else []
    )
    # adapter c, then the base model's config and its tokenizer files
    assert {d.rule for d in over} == {"sources.unreadable", "model.tokenizer-unreadable"}
    assert all(d.is_error and "check fewer deployments at once" in d.message for d in over)
    messages = " ".join(d.message for d in over)
    assert "adapters/c/" in messages and "adapters/b/" not in messages


def test_target_module_the_model_lacks_is_an_error_listing_what_it_has(tiny):
    tiny.adapter("odd", edit=lambda c: c.update(target_modules=["q_proj", "c_attn"]))
    error = tiny({"odd": 1})["compat.unknown-target"]
    assert "does not have: c_attn" in error.message
    assert "q_proj" in error.hint and "gate_proj" in error.hint


def test_regex_target_modules_are_matched_against_full_module_names(tiny):
    tiny.adapter(
        "rx", edit=lambda c: c.update(target_modules=r".*\.layers\.\d+\.self_attn\.(q|v)_proj")
    )
    assert tiny({"rx": 1}) == {}
    tiny.adapter("rx", edit=lambda c: c.update(target_modules=r".*\.attn\.c_proj"))
    assert "compat.unknown-target" in tiny({"rx": 1})


def test_bias_and_missing_fields_and_missing_weights_are_errors(tiny):
    folder = tiny.adapter("broken", edit=lambda c: (c.update(bias="all"), c.pop("lora_alpha")))
    (folder / "adapter_model.safetensors").unlink()
    found = tiny({"broken": 1})
    assert set(found) == {"compat.bias", "compat.missing-field", "compat.no-weights"}
    assert "lacks lora_alpha" in found["compat.missing-field"].message


@pytest.mark.parametrize(
    ("version", "modules", "ok"),
    [("0.11.2", ["score"], False), ("0.32.0", ["score"], True), ("0.32.0", ["lm_head"], False)],
)
def test_modules_to_save_follow_what_the_pinned_version_accepts(tiny, version, modules, ok):
    tiny.adapter("heads", edit=lambda c: c.update(modules_to_save=modules))
    found = tiny({"heads": 1}, version=version)
    assert ("compat.modules-to-save" not in found) is ok


def test_hub_base_names_are_compared_case_insensitively(project):
    build_lora_adapter(project.root / "adapters" / "a", "qwen/qwen3-4b-instruct-2507", 8, seed=1)
    build_lora_adapter(project.root / "adapters" / "b", "Qwen/Qwen3-8B", 8, seed=2)
    project.deployment(
        "d",
        "base_model: {repo: Qwen/Qwen3-4B-Instruct-2507}\nadapters:\n  - {name: a, "
        "path: ../adapters/a}\n  - {name: b, path: ../adapters/b}\ngpu: L4\nvllm: "
        "{version: '0.11.2'}\nauth: {proxy: true}\n",
    )
    (error,) = check_paths([project.deployments]).diagnostics
    assert (
        error.path == ("adapters", 1)
        and "was trained on Qwen/Qwen3-8B, not on the base model Qwen/Qwen3-4B-Instruct-2507"
        in error.message
    )


def test_a_backtracking_target_modules_pattern_is_a_warning_within_its_deadline(tiny):
    # Python's re does not finish this on "model.embed_tokens" (exponential backtracking); PEFT
    # would not either, so it is reported, after MATCH_SECONDS, rather than waited for.
    tiny.adapter("slow", edit=lambda c: c.update(target_modules=r"((\w|\.)+)+q_proj"))
    found = tiny({"slow": 1})
    assert (
        set(found) == {"compat.slow-pattern"}
        and "took over" in found["compat.slow-pattern"].message
    )


@pytest.mark.parametrize("field", ["rank_pattern", "alpha_pattern"])
def test_a_backtracking_rank_or_alpha_pattern_key_is_a_warning_within_its_deadline(tiny, field):
    # A hunt: vLLM matches each key as (.*\.)?(key)$ against every module name when it loads the
    # adapter, with no deadline; this one ran past 8 s on one name, and only the values were read.
    tiny.adapter("slow", edit=lambda c: c.update({field: {"q_proj": 8, r"([\w.]|[\w.])*\d{3}": 8}}))
    found = tiny({"slow": 1})
    assert (
        set(found) == {"compat.slow-pattern"}
        and f"{field} keys ['q_proj'" in found["compat.slow-pattern"].message
    )


def test_ordinary_rank_pattern_keys_are_no_finding(tiny):
    tiny.adapter(
        "ranked",
        edit=lambda c: c.update(
            rank_pattern={"model.layers.0.self_attn.q_proj": 8}, alpha_pattern={"q_proj": 16}
        ),
    )
    assert "compat.slow-pattern" not in tiny({"ranked": 1})


@pytest.mark.parametrize(
    ("pattern", "found"),
    [
        # re reads {,2} as 0 to 2 repeats (RE2 as the text "{,2}", which made this an error).
        (r"model\.layers\.\d{,2}\.self_attn\.q_proj", set()),
        # re reads [[:alpha:]] as a set ([ : a l p h) then "]" (RE2 as any letter): PEFT matched nothing.
        (r"model\.layers\.0\.self_attn\.[[:alpha:]]_proj", {"compat.unknown-target"}),
        (r".*\.(q|v)_proj", set()),
        (r"model\.layers\.0\.self_attn\.(?!q)o_proj", set()),
    ],
)
def test_target_modules_patterns_are_read_as_peft_read_them(tiny, pattern, found):
    tiny.adapter("p", edit=lambda c: c.update(target_modules=pattern))
    assert set(tiny({"p": 1})) == found
