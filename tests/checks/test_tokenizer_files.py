"""The tokenizer's own config names files transformers opens as written: a committed
tokenizer_config.json (or one in a Hub repo the YAML names) reading /proc/self/environ made the
container's Secrets a token that /detokenize gave back. Local folders are real files; the Hub is
tests/fake_hub.py (a stateful fake of the Hub's file API, the network boundary)."""

from __future__ import annotations

import json

import pytest

from deployer.checks.pipeline import check_paths

from ..sources.test_hub import QWEN3_4B, online  # noqa: F401 (the fake Hub fixture)
from ..tiny_model import build_base_model

LOCAL = (
    "base_model: {path: ../models/tiny, served_name: tiny}\ngpu: T4\nvllm: "
    "{version: '0.32.0'%s}\nauth: {proxy: true}\n"
)


def findings(
    project, tokenizer: dict, args: str = "", filename: str = "tokenizer_config.json"
) -> dict:
    folder = build_base_model(project.root / "models" / "tiny")
    (folder / filename).write_text(json.dumps(tokenizer))
    project.deployment("d", LOCAL % args)
    return {d.rule: d for d in check_paths([project.deployments]).diagnostics}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (
            "vocab",
            "/proc/self/environ",
        ),  # transformers 5: BertTokenizer's WordPiece reads a str vocab as a file
        (
            "vocab_file",
            "../../proc/1/environ",
        ),  # transformers 4: the config's vocab_file wins over the folder's
        ("tokenizer_file", "~/.modal.toml"),
        (
            "anything",
            "/proc/self/environ",
        ),  # a constructor argument named otherwise, written as a path
        # transformers joins some names to the model folder: from /root/sources/m, that is /root/.ssh
        ("anything", "../../.ssh/id_rsa"),
    ],
)
def test_a_tokenizer_config_naming_a_system_file_is_an_error(project, key, value):
    found = findings(
        project, {"tokenizer_class": "BertTokenizer", key: value, "do_lower_case": False}
    )
    error = found["model.tokenizer-reads-system-file"]
    assert (
        error.is_error
        and (error.line, error.column) == (1, 13)
        and repr(value) in error.message
        and "/proc/self/environ" in error.message
    )
    assert f"remove {key}" in error.hint


def test_special_tokens_map_keys_are_constructor_arguments_too(project):
    # transformers 5 adds every key of special_tokens_map.json to the constructor's arguments when
    # tokenizer_config.json has no added_tokens_decoder: a hunt served the environment this way.
    special = {"vocab": "/proc/self/environ", "tokenizer_file": None, "unk_token": "[UNK]"}
    error = findings(project, special, filename="special_tokens_map.json")[
        "model.tokenizer-reads-system-file"
    ]
    assert (
        "../models/tiny/special_tokens_map.json names '/proc/self/environ' (vocab)" in error.message
    )


def test_a_tokenizer_config_the_deployer_cannot_read_is_an_error(project):
    # Over 4 MB, it was skipped as if absent; transformers reads it whatever its size.
    error = findings(
        project, {"vocab": "/proc/self/environ", "padding": "a" * (4 * 1024 * 1024 + 10)}
    )["model.tokenizer-unreadable"]
    assert (
        error.is_error
        and "cannot read ../models/tiny/tokenizer_config.json (ValueError:" in error.message
    )


def test_a_tokenizer_config_naming_another_file_is_a_warning(project):
    warning = findings(
        project, {"tokenizer_class": "BertTokenizer", "vocab_file": "sources/other/vocab.txt"}
    )["model.tokenizer-reads-file"]
    assert (
        warning.severity.value == "warning"
        and "vocab_file: 'sources/other/vocab.txt'" in warning.message
    )


def test_an_ordinary_tokenizer_config_is_no_finding(project):
    ordinary = {
        "tokenizer_class": "Qwen2Tokenizer",
        "name_or_path": "/home/trainer/qwen",
        "eos_token": "</s>",
        "extra_special_tokens": ["/think"],
        "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
        "added_tokens_decoder": {"0": {"content": "<|endoftext|>"}},
    }
    assert findings(project, ordinary) == {}


HUB = (
    "base_model: {repo: org/model}\ngpu: H100\nvllm: {version: '0.11.2', args: "
    "{max-model-len: 4096%s}}\nauth: {proxy: true}\n"
)
EVIL = json.dumps({"tokenizer_class": "BertTokenizer", "vocab_file": "/proc/self/environ"})


def test_a_hub_models_tokenizer_config_is_read_and_judged(project, online):
    online.add("org/model", {"config.json": QWEN3_4B, "tokenizer_config.json": EVIL})
    project.deployment("d", HUB % "")
    (error,) = check_paths([project.deployments]).diagnostics
    assert (
        error.rule == "model.tokenizer-reads-system-file"
        and "org/model/tokenizer_config.json names '/proc/self/environ'" in error.message
    )
    assert ("/org/model/resolve/main/tokenizer_config.json", None) in online.requests


def test_a_hub_tokenizer_named_by_the_tokenizer_flag_is_judged_at_the_base_models_revision(
    project, online
):
    # (the deployer passes base_model.revision as --tokenizer-revision)
    online.add("org/model", {"config.json": QWEN3_4B, "tokenizer_config.json": "{}"}, revision="v2")
    online.add("org/tok", {"tokenizer_config.json": "{}"}, revision="main")
    online.add("org/tok", {"tokenizer_config.json": EVIL}, revision="v2")
    project.deployment(
        "d",
        HUB.replace("{repo: org/model}", "{repo: org/model, revision: v2}")
        % ", tokenizer: org/tok",
    )
    (error,) = check_paths([project.deployments]).diagnostics
    assert (error.rule, error.line) == (
        "model.tokenizer-reads-system-file",
        3,
    ) and "org/tok/tokenizer_config.json" in error.message


def test_a_hub_model_without_a_tokenizer_config_is_no_finding(project, online):
    online.add("org/model", {"config.json": QWEN3_4B})
    project.deployment("d", HUB % "")
    assert check_paths([project.deployments]).diagnostics == ()


def local_config_findings(project, extra: dict) -> dict:
    folder = build_base_model(project.root / "models" / "tiny")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **extra}))
    project.deployment("d", LOCAL % "")
    return {d.rule: d for d in check_paths([project.deployments]).diagnostics}


def test_a_speculators_config_that_swaps_in_another_model_is_an_error(project):
    # A hunt: vLLM served models/tiny/v (its verifier) in place of models/tiny, with that folder's
    # own tokenizer reading a file outside the repository, and validate --strict was silent.
    speculators = {
        "speculators_model_type": "eagle3",
        "speculators_config": {
            "default_proposal_method": "eagle3",
            "verifier": {"name_or_path": "/root/sources/models/base/v"},
        },
    }
    error = local_config_findings(project, speculators)["model.config-swaps-model"]
    assert error.is_error and (error.line, error.column) == (1, 13)
    assert (
        "../models/tiny/config.json has speculators_config: vLLM would serve the model "
        "its verifier names ('/root/sources/models/base/v') in place of this one" in error.message
    )
    assert "speculative-config" in error.hint


def test_a_hub_models_speculators_config_is_an_error_too(project, online):
    online.add(
        "org/model",
        {
            "config.json": json.dumps(
                {
                    **json.loads(QWEN3_4B),
                    "speculators_config": {"verifier": {"name_or_path": "attacker/model"}},
                }
            )
        },
    )
    project.deployment("d", HUB % "")
    rules = {d.rule: d for d in check_paths([project.deployments]).diagnostics}
    assert (
        "org/model/config.json has speculators_config: vLLM would serve the model its "
        "verifier names ('attacker/model')" in rules["model.config-swaps-model"].message
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vocab_file", "/proc/self/environ"),
        ("anything", "../../../etc/shadow"),
        ("configuration_files", "config./../../x.json"),
    ],
)
def test_a_model_config_naming_a_system_file_is_an_error(project, key, value):
    error = local_config_findings(project, {key: value})["model.config-reads-system-file"]
    assert error.is_error and repr(value) in error.message


def test_where_a_model_was_trained_is_no_finding(project):
    assert (
        local_config_findings(
            project,
            {
                "_name_or_path": "../outputs/run-1",
                "text_config": {"_name_or_path": "/home/me/ckpt"},
            },
        )
        == {}
    )


def test_a_nested_file_key_after_a_long_list_is_still_judged(project):
    # A hunt: json_items stops at 100,000 values (for flags, an error); here the nested key after
    # `"pad": [0] * 100001` (200 KB) went unjudged, and the finding disappeared.
    processor = {"pad": [0] * 100_001, "image_processor": {"vocab_file": "/proc/self/environ"}}
    error = findings(project, processor, filename="processor_config.json")[
        "model.tokenizer-reads-system-file"
    ]
    assert "'/proc/self/environ' (vocab_file)" in error.message


@pytest.mark.parametrize(
    "where", ["consolidated.safetensors", "v/consolidated-00001-of-00002.safetensors"]
)
def test_mistral_format_weights_beside_the_checked_ones_are_an_error(project, where):
    # A hunt: vLLM's auto load format loaded consolidated.safetensors (other weights) in place of
    # the checked model.safetensors, validate --strict silent; params.json and tekken.json follow.
    folder = build_base_model(project.root / "models" / "tiny")
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / where).write_bytes((folder / "model.safetensors").read_bytes())
    project.deployment("d", LOCAL % "")
    error = {d.rule: d for d in check_paths([project.deployments]).diagnostics}[
        "model.mistral-format"
    ]
    assert (
        error.is_error
        and f"../models/tiny holds {where}: beside Mistral-format weights vLLM loads those"
        in error.message
    )
    assert "load-format: mistral" in error.hint
    project.deployment("d", LOCAL % ", args: {load-format: mistral}")
    warning = {d.rule: d for d in check_paths([project.deployments]).diagnostics}[
        "model.mistral-format"
    ]
    assert warning.severity.value == "warning" and warning.path == ("vllm", "args", "load-format")


def test_a_config_naming_another_model_to_load_is_a_warning(project):
    # Ultravox: vLLM loads the text model's config and weights from the id (the Hub, unpinned).
    warning = local_config_findings(project, {"text_model_id": "someone/any-hub-model"})[
        "model.config-loads-model"
    ]
    assert (
        warning.severity.value == "warning"
        and "(text_model_id: 'someone/any-hub-model')" in warning.message
    )


def test_marians_sentencepiece_files_are_files_too(project):
    warning = findings(
        project, {"tokenizer_class": "MarianTokenizer", "source_spm": "sources/other/source.spm"}
    )["model.tokenizer-reads-file"]
    assert "source_spm: 'sources/other/source.spm'" in warning.message


def test_configuration_files_that_swap_in_another_config_are_an_error(project):
    # A hunt: transformers read config.4.0.0.json (holding speculators_config) in place of the
    # checked config.json, and vLLM served any Hub repo.
    error = local_config_findings(project, {"configuration_files": ["config.4.0.0.json"]})[
        "model.config-swaps-model"
    ]
    assert (
        error.is_error
        and "has configuration_files: transformers reads the config.X.json it names in "
        "place of config.json"
        in error.message
    )


@pytest.mark.parametrize(
    ("args", "rule", "said"),
    [
        # a hunt: tiktoken.model decoded token 256
        (
            "tokenizer-mode: kimi_audio",
            "model.unchecked-format",
            "tokenizer-mode kimi_audio makes vLLM read the model's tokenizer from files the "
            "deployer does not check",
        ),
        ("tokenizer-mode: mistral", "model.unchecked-format", "tokenizer-mode mistral"),
        (
            "config-format: mistral",
            "model.unchecked-format",
            "config-format mistral makes vLLM read the model's configuration",
        ),
        (
            "hf-overrides: {text_model_id: a/b}",
            "model.config-loads-model",
            "hf-overrides names another model to load (text_model_id: 'a/b')",
        ),
        (
            "speculative-config: {model: Qwen/Qwen3-0.6B, method: draft_model, "
            "num_speculative_tokens: 2}",
            "model.config-loads-model",
            "at its newest revision",
        ),
        (
            'speculative-config: \'{"model": "Qwen/Qwen3-0.6B", "revision": "abc", '
            '"num_speculative_tokens": 2}\'',
            "model.config-loads-model",
            "at revision 'abc'",
        ),
    ],
)
def test_flags_that_load_unchecked_model_files_are_warnings(project, args, rule, said):
    build_base_model(project.root / "models" / "tiny")
    project.deployment("d", LOCAL % f", args: {{{args}}}")
    warning = {d.rule: d for d in check_paths([project.deployments]).diagnostics}[rule]
    assert warning.severity.value == "warning" and said in warning.message


@pytest.mark.parametrize(
    "args",
    [
        "tokenizer-mode: auto",
        "tokenizer-mode: hf",
        "tokenizer-mode: slow",
        "config-format: hf",
        "speculative-config: {method: ngram, num_speculative_tokens: 2, prompt_lookup_max: 4}",
    ],
)
def test_flags_that_keep_to_the_checked_files_are_no_finding(project, args):
    build_base_model(project.root / "models" / "tiny")
    project.deployment("d", LOCAL % f", args: {{{args}}}")
    rules = {d.rule for d in check_paths([project.deployments]).diagnostics}
    assert not rules & {"model.unchecked-format", "model.config-loads-model"}


def test_load_format_mistral_is_a_warning_even_when_the_base_model_was_not_read(project):
    # (a Hub model out of reach offline: its files unread, the flag still says what it does)
    project.deployment(
        "d",
        "base_model: {repo: org/unreachable}\ngpu: L4\nvllm: {version: '0.32.0', args: "
        "{load-format: mistral}}\nauth: {proxy: true}\n",
    )
    warning = {d.rule: d for d in check_paths([project.deployments]).diagnostics}[
        "model.mistral-format"
    ]
    assert warning.severity.value == "warning" and (warning.line, warning.column) == (
        3,
        47,
    )  # the value


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            "speculative-config: {model: gpt2, num_speculative_tokens: 3}",
            "('gpt2')",
        ),  # a Hub repo of one name
        (
            "speculative-config: {model: org/draft, revision: 5, num_speculative_tokens: 3}",
            "at its newest revision",
        ),
        (
            "load-format: MISTRAL",
            "load-format mistral loads consolidated*.safetensors",
        ),  # vLLM lower-cases it
    ],
)
def test_unchecked_model_files_are_found_however_they_are_spelled(project, args, said):
    build_base_model(project.root / "models" / "tiny")
    project.deployment("d", LOCAL % f", args: {{{args}}}")
    assert any(said in d.message for d in check_paths([project.deployments]).diagnostics)


def test_only_the_draft_vllm_reads_is_named_and_invalid_modes_are_only_errors(project):
    build_base_model(project.root / "models" / "tiny")
    project.deployment(
        "d",
        LOCAL % ", args: {speculative-config: {model: '[ngram]', draft: {model: org/z}, "
        "num_speculative_tokens: 2}, tokenizer-mode: [a, b]}",
    )
    rules = [d.rule for d in check_paths([project.deployments]).diagnostics]
    assert "model.config-loads-model" not in rules and "model.unchecked-format" not in rules


def test_an_audio_tokenizer_named_by_its_config_is_judged(project):
    # A hunt: a processor loads the tokenizer audio_tokenizer_config.json names, from any path or
    # Hub repo (transformers processing_utils), and the file went unread.
    audio = {
        "audio_tokenizer_class": "AutoTokenizer",
        "audio_tokenizer_name_or_path": "/tmp/outside",
    }
    warning = findings(project, audio, filename="audio_tokenizer_config.json")[
        "model.tokenizer-reads-file"
    ]
    assert (
        "audio_tokenizer_config.json names a file for the tokenizer to open as written "
        "(audio_tokenizer_name_or_path: '/tmp/outside')" in warning.message
    )
    error = findings(
        project,
        {**audio, "audio_tokenizer_name_or_path": "../../../proc/1"},
        filename="audio_tokenizer_config.json",
    )["model.tokenizer-reads-system-file"]
    assert error.is_error
