"""vllm.args against the pinned version's real flag catalog, and rendering by action kind."""

from __future__ import annotations

import json
import subprocess

import pytest

from deployer.checks.pipeline import check_paths
from deployer.vllm import catalog
from deployer.vllm.argv import flag_tokens, vllm_flags

from ..conftest import NO_VLLM, REPO, VLLM_PYTHON

HEAD = """\
base_model: {repo: org/base}
gpu: L4
auth: {proxy: true}
vllm:
  version: "%s"
  args:
"""


def check(project, version: str, args: str):
    project.deployment(
        "d", HEAD % version + "".join(f"    {line}\n" for line in args.strip().splitlines())
    )
    return check_paths([project.deployments])


def only(checked):
    (diagnostic,) = checked.diagnostics
    return diagnostic


def test_shipped_catalogs_cover_the_reference_pin_and_the_newest_cpu_release():
    assert {"0.11.2", "0.32.0", "0.33.0"} <= set(catalog.available_versions())
    for version in ("0.11.2", "0.32.0", "0.33.0"):
        flags = catalog.load(version)
        assert flags.lookup("enforce-eager").kind == "boolean_optional"
        assert flags.lookup("max-lora-rank").choices == (1, 8, 16, 32, 64, 128, 256, 320, 512)
        assert flags.lookup("lora-modules").nargs == "+"


def test_unknown_flag_suggests_the_closest(project):
    error = only(check(project, "0.32.0", "max-model-lenn: 4096"))
    assert (error.rule, error.line, error.column) == ("flags.unknown", 7, 5)
    assert error.hint == "did you mean 'max-model-len'?"


@pytest.mark.parametrize(
    ("version", "flag", "other"),
    [
        ("0.32.0", "swap-space", "0.11.2"),
        ("0.32.0", "guided-decoding-backend", "0.11.2"),
        ("0.11.2", "lora-target-modules", "0.32.0, 0.33.0"),
    ],
)
def test_flag_of_another_version_says_which_versions_have_it(project, version, flag, other):
    error = only(check(project, version, f"{flag}: x"))
    assert error.rule == "flags.not-in-version"
    assert (
        f"--{flag} does not exist in vLLM {version} (the pinned version); it exists in {other}"
        == error.message
    )


def test_value_outside_choices_suggests_the_next_allowed_rank(project):
    error = only(check(project, "0.32.0", "max-lora-rank: 24"))
    assert (error.rule, error.column) == ("flags.value", 20)
    assert "--max-lora-rank does not accept 24" in error.message
    assert error.hint.startswith("use 32, the smallest allowed value above it")


def test_misspelt_choice_suggests_the_right_one(project):
    error = only(check(project, "0.32.0", "dtype: bfloat_16"))
    assert error.hint == "did you mean 'bfloat16'?"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("max-model-len: lots", "takes a number of tokens"),
        ("max-num-seqs: 2.5", "takes a whole number"),
        ("enforce-eager: 'yes'", "takes true or false"),
        ("gpu-memory-utilization: high", "takes a number"),
        ("dtype: [auto, half]", "takes one value, not a list"),
        ("seed: {a: 1}", "does not take a mapping"),
        ("dtype: no", "takes a value, not false"),
    ],
)
def test_wrong_value_types_are_errors(project, args, message):
    error = only(check(project, "0.32.0", args))
    assert error.rule == "flags.value" and message in error.message


def test_negated_name_asks_for_the_canonical_boolean(project):
    error = only(check(project, "0.32.0", "no-enforce-eager: true"))
    assert error.rule == "flags.negated-name" and "`enforce-eager: false`" in error.message


@pytest.mark.parametrize(
    "size", ["4k", "4K", "25.6k", "'40960'", "１２k"]
)  # vLLM's \\d takes any Unicode digit, as float() does
def test_sizes_vllm_reads_are_accepted(project, size):
    assert check(project, "0.32.0", f"max-model-len: {size}").diagnostics == ()


@pytest.mark.parametrize(
    ("size", "why"),
    [
        # "Decimals are not allowed with binary suffixes"
        ("1.5K", "a decimal point only before k, m, g or t (25.6k), not before K"),
        ("'4096.5'", "not without a unit"),  # int("4096.5") fails
        (
            "9" * 400 + "k",
            "more than 9,007,199,254,740,992 tokens",
        ),  # float overflow: vLLM stops with OverflowError
        ("'" + "9" * 5000 + "'", "takes at most 4,300 digits"),  # int() refuses 5,000 digits
        ("'0x1000'", "takes a number of tokens such as 4096"),
        # int() refuses it: was an internal error
        ("'" + "0" * 4300 + "1'", "takes at most 4,300 digits (leading zeros included)"),
        ("'" + "0" * 5000 + "1K'", "takes at most 4,300 digits"),
    ],
)
def test_sizes_vllm_would_refuse_are_errors_that_say_why(project, size, why):
    error = only(check(project, "0.32.0", f"max-model-len: {size}"))
    assert error.rule == "flags.value" and why in error.message and error.is_error


def test_uncatalogued_version_warns_and_names_what_was_not_checked(project):
    warning = only(check(project, "0.9.9", "max-model-len: 4096\nenforce-eager: true"))
    assert warning.rule == "flags.no-catalog" and not warning.is_error
    assert "(--max-model-len, --enforce-eager)" in warning.message
    assert "0.11.2, 0.32.0, 0.33.0" in warning.hint


def test_values_render_by_action_kind():
    flags = catalog.load("0.32.0")
    assert flag_tokens("enforce-eager", False, flags.lookup("enforce-eager")) == [
        "--no-enforce-eager"
    ]
    store_true = next(f for f in flags.flags.values() if f.kind == "store_true")
    assert flag_tokens(store_true.name, False, store_true) == []  # `--no-x` would not parse
    assert flag_tokens("middleware", ["a.B", "c.D"], flags.lookup("middleware")) == [
        "--middleware",
        "a.B",
        "--middleware",
        "c.D",
    ]
    assert flag_tokens(
        "allowed-media-domains", ["a.com", "b.com"], flags.lookup("allowed-media-domains")
    ) == ["--allowed-media-domains", "a.com", "b.com"]
    assert flag_tokens("allowed-origins", ["https://a"], flags.lookup("allowed-origins")) == [
        "--allowed-origins",
        '["https://a"]',
    ]
    assert flag_tokens("compilation-config", {"mode": 0}, flags.lookup("compilation-config")) == [
        "--compilation-config",
        '{"mode":0}',
    ]


def test_rendered_flags_use_the_catalog_of_the_pinned_version(project):
    checked = check(project, "0.32.0", "allowed-origins: ['https://a']")
    assert vllm_flags(checked.deployments[0])[-2:] == ["--allowed-origins", '["https://a"]']


def test_catalog_regenerated_from_installed_vllm_matches_the_shipped_one():
    assert VLLM_PYTHON, NO_VLLM
    out = subprocess.run(
        [VLLM_PYTHON, str(REPO / "scripts" / "extract_vllm_flags.py"), "--stdout"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = json.loads(out.stdout)
    shipped = json.loads((catalog.CATALOG_DIR / f"{fresh['vllm_version']}.json").read_text())
    for doc in (fresh, shipped):
        doc.pop("extracted_on")
    assert fresh == shipped


def test_false_renders_as_the_negative_form_the_version_has():
    flags = catalog.load("0.33.0")
    assert flag_tokens("enable-chunked-prefill", False, flags.lookup("enable-chunked-prefill")) == [
        "--disable-chunked-prefill"
    ]
    assert flag_tokens("enforce-eager", False, flags.lookup("enforce-eager")) == [
        "--no-enforce-eager"
    ]


def test_an_alias_of_a_managed_flag_is_still_managed(project):
    error = only(check(project, "0.33.0", "disable-lora: true"))
    assert error.rule == "flags.managed" and "--enable-lora is set by the deployer" in error.message


@pytest.mark.parametrize(
    ("args", "message", "source"),
    [
        (
            "gpu-memory-utilization: 1.5",
            "--gpu-memory-utilization must be > 0 and <= 1, not 1.5",
            "CacheConfig.gpu_memory_utilization",
        ),
        (
            "gpu-memory-utilization: 0",
            "must be > 0 and <= 1, not 0",
            "CacheConfig.gpu_memory_utilization",
        ),
        ("max-model-len: -5", "--max-model-len must be >= -1, not -5", "ModelConfig.max_model_len"),
        ("max-num-seqs: 0", "--max-num-seqs must be >= 1, not 0", "SchedulerConfig.max_num_seqs"),
        (
            "cpu-offload-gb: -1",
            "--cpu-offload-gb must be >= 0, not -1",
            "UVAOffloadConfig.cpu_offload_gb",
        ),
    ],
)
def test_values_outside_vllms_own_bounds_are_errors(project, args, message, source):
    error = only(check(project, "0.32.0", args))
    assert (
        error.rule == "flags.value"
        and message in error.message
        and error.column == len(args.split(":")[0]) + 7
    )
    assert source in error.hint


@pytest.mark.parametrize(
    "args",
    [
        "gpu-memory-utilization: 1",
        "max-model-len: -1",
        "max-model-len: auto",
        "max-model-len: 4k",
        "max-num-seqs: 1",
    ],
)
def test_values_at_vllms_bounds_pass(project, args):
    assert check(project, "0.32.0", args).diagnostics == ()


def test_every_catalog_records_bounds_from_vllms_config_fields():
    for version in catalog.available_versions():
        flag = catalog.load(version).lookup("gpu-memory-utilization")
        assert (
            dict(flag.bounds) == {"gt": 0, "le": 1}
            and flag.bounds_source == "CacheConfig.gpu_memory_utilization"
        ), version


@pytest.mark.parametrize("flag", ["speculative-config", "kv-transfer-config", "compilation-config"])
def test_json_flags_take_mappings_whatever_wrapper_vllm_puts_around_the_parser(project, flag):
    checked = check(
        project, "0.32.0", f'{flag}: {{"method": "ngram", "num_speculative_tokens": 3}}'
    )
    assert [d.rule for d in checked.diagnostics] == (
        ["flags.exposes"] if flag == "kv-transfer-config" else []
    )  # it connects to a peer
    assert vllm_flags(checked.deployments[0])[-2:] == [
        f"--{flag}",
        '{"method":"ngram","num_speculative_tokens":3}',
    ]


def test_vllm_itself_refuses_what_the_bounds_refuse():
    assert VLLM_PYTHON, NO_VLLM
    probe = (
        "import vllm.platforms\nfrom vllm.platforms.cpu import "
        "CpuPlatform\nvllm.platforms._current_platform = CpuPlatform()\n"
        "from vllm.config import CacheConfig\nimport pydantic\n"
        "CacheConfig(gpu_memory_utilization=1.0)\n"
        "try:\n    CacheConfig(gpu_memory_utilization=1.5)\nexcept "
        "pydantic.ValidationError as e:\n    print('refused', e.errors()[0]['type'])\n"
    )
    out = subprocess.run([VLLM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "refused less_than_equal", out.stderr[-2000:]


def test_download_dir_is_owned_by_the_deployer(project):
    error = only(check(project, "0.32.0", "download-dir: /tmp/weights"))
    assert error.rule == "flags.managed" and "cache volume" in error.hint


@pytest.mark.parametrize(
    "variable", ["HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"]
)
def test_moving_the_hugging_face_cache_in_image_env_is_refused(project, variable):
    project.deployment(
        "d", HEAD % "0.32.0" + f"    max-model-len: 4096\nimage:\n  env: {{{variable}: /data/hf}}\n"
    )
    error = only(check_paths([project.deployments]))
    assert (error.rule, error.line, error.column) == ("image.env-cache", 9, 9)
    assert "download the weights again" in error.message and f"remove {variable}" in error.hint


def test_a_config_file_of_flags_is_refused(project):
    # vLLM reads every key of that YAML as a flag, none of them checked: `api-key: ""` there
    # turned an API-key endpoint public in the bypass hunt.
    error = only(check(project, "0.32.0", "config: models/tiny/settings.yaml"))
    assert error.rule == "flags.managed" and "unchecked" in error.hint


@pytest.mark.parametrize("value", ["-1.5", "-.5", "-1e.5"])
def test_a_negative_decimal_value_is_refused_as_vllm_reads_it_as_a_dotted_option(project, value):
    error = only(check(project, "0.32.0", f'response-role: "{value}"'))
    assert error.rule == "flags.value-looks-like-flag"
    assert check(project, "0.32.0", 'response-role: "-1"').diagnostics == ()


def test_vllm_reads_a_negative_decimal_as_a_dotted_option():
    assert VLLM_PYTHON, NO_VLLM
    probe = (
        "import vllm.platforms\nfrom vllm.platforms.cpu import "
        "CpuPlatform\nvllm.platforms._current_platform = CpuPlatform()\n"
        "from vllm.entrypoints.launchers.cli_args import make_arg_parser\nfrom "
        "vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "parser = make_arg_parser(FlexibleArgumentParser())\n"
        "print(parser.parse_args(['--response-role', '-1', '--port', '8000']).response_role)\n"
        "try:\n    parser.parse_args(['--response-role', '-1.5', '--port', "
        "'8000'])\nexcept SystemExit:\n    print('refused')\n"
    )
    out = subprocess.run([VLLM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["-1", "refused"], out.stderr[-2000:]


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("trust-remote-code: true", "runs Python code from the model's repository"),
        ("tool-parser-plugin: plugins/parser.py", "imports the Python file it names"),
        ("allowed-local-media-path: /", "read files under that folder"),
        ("worker-extension-cls: pkg.Ext", "into every worker"),
    ],
)
def test_flags_that_run_code_are_warnings_to_review(project, flag, words):
    warning = only(check(project, "0.32.0", flag))
    assert (warning.rule, warning.severity.value) == (
        "flags.runs-code",
        "warning",
    ) and words in warning.message
    assert check(project, "0.32.0", "trust-remote-code: false").diagnostics == ()


@pytest.mark.parametrize(
    ("variable", "rule"),
    [
        ("PYTHONPATH", "image.env-runs-code"),
        ("LD_PRELOAD", "image.env-runs-code"),
        ("HF_ENDPOINT", "image.env-network"),
        ("https_proxy", "image.env-network"),
        ("PYTHONUSERBASE", "image.env-runs-code"),
        ("PYTHONWARNINGS", "image.env-runs-code"),
        ("LD_AUDIT", "image.env-runs-code"),
        ("GCONV_PATH", "image.env-runs-code"),
        ("BASH_ENV", "image.env-runs-code"),
        ("VLLM_USAGE_STATS_SERVER", "image.env-network"),
        ("VLLM_USE_MODELSCOPE", "image.env-network"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "image.env-network"),
        ("PATH", "image.env-runs-code"),
        ("XDG_CONFIG_HOME", "image.env-runs-code"),
        ("TRITON_CACHE_DIR", "image.env-runs-code"),
        ("VLLM_NCCL_SO_PATH", "image.env-runs-code"),
        ("CC", "image.env-runs-code"),
        ("NCCL_NET_PLUGIN", "image.env-runs-code"),
        ("HF_MODULES_CACHE", "image.env-runs-code"),
        # vLLM's SageMaker bootstrap runs a script, handlers and middleware (outside the key guard) that these name
        ("CUSTOM_SCRIPT_FILENAME", "image.env-runs-code"),
        ("CUSTOM_FASTAPI_MIDDLEWARE_THROTTLE", "image.env-runs-code"),
        ("SAGEMAKER_MODEL_PATH", "image.env-runs-code"),
        ("STANDARD_AUTO_INSTALL_REQ", "image.env-runs-code"),
        ("VLLM_USE_RUST_FRONTEND", "image.env-runs-code"),
        ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "image.env-unreviewed"),
        ("SOMETHING_NEW", "image.env-unreviewed"),
        (
            "VLLM_HOST_IP",
            "image.env-unreviewed",
        ),  # the address vLLM's processes reach each other on
    ],
)
def test_image_env_that_loads_code_or_reroutes_downloads_is_a_warning(project, variable, rule):
    project.deployment(
        "d",
        HEAD % "0.32.0"
        + f"    max-model-len: 4096\nimage:\n  env: {{{variable}: 'https://elsewhere.example'}}\n",
    )
    warning = only(check_paths([project.deployments]))
    assert (warning.rule, warning.severity.value, warning.line) == (rule, "warning", 9)


@pytest.mark.parametrize("variable", ["HOME", "XDG_CACHE_HOME"])
def test_image_env_moving_the_home_folder_is_an_error(project, variable):
    # HOME moves the Hugging Face cache off its volume, and Python's user site-packages (whose
    # .pth files run at every start, -P or not) into whatever folder it names.
    project.deployment(
        "d",
        HEAD % "0.32.0"
        + f"    max-model-len: 4096\nimage:\n  env: {{{variable}: /root/sources/adapters/m}}\n",
    )
    error = only(check_paths([project.deployments]))
    assert (error.rule, error.severity.value) == ("image.env-cache", "error")


def test_vllm_dev_mode_routes_need_proxy_auth(project):
    project.deployment(
        "d",
        HEAD.replace("auth: {proxy: true}", "auth: {api_key: {secret: k}}") % "0.32.0"
        + "    max-model-len: 4096\nimage:\n  env: {VLLM_SERVER_DEV_MODE: '1'}\n",
    )
    error = only(check_paths([project.deployments]))
    assert (error.rule, error.severity.value) == (
        "image.env-dev-routes",
        "error",
    ) and "replace its weights" in error.message


def test_image_env_that_only_tunes_python_or_vllm_is_no_finding(project):
    project.deployment(
        "d",
        HEAD % "0.32.0" + "    max-model-len: 4096\nimage:\n  env: {PYTHONUNBUFFERED: '1', "
        "VLLM_ATTENTION_BACKEND: FLASH_ATTN, LANG: C.UTF-8, LC_ALL: en_US.UTF-8, TZ: "
        "Europe/London}\n",
    )
    assert check_paths([project.deployments]).diagnostics == ()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LANG", "/root/sources/models/base/loc"),
        ("LC_ALL", "../sources/x"),
        ("TZ", ":/root/sources/tz"),
        ("TZ", "../../root/sources/tz"),
    ],
)
def test_locale_and_time_zone_values_that_name_files_are_reviewed(project, variable, value):
    # glibc parses the file such a value names: committed data would reach its locale or tzfile parser.
    project.deployment(
        "d",
        HEAD % "0.32.0" + f"    max-model-len: 4096\nimage:\n  env: {{{variable}: '{value}'}}\n",
    )
    assert only(check_paths([project.deployments])).rule == "image.env-unreviewed"


@pytest.mark.parametrize("value", ["a'\\nRUN touch /pwned\\nENV Z='b", "x\\ry", "tab\\tok\\u0007"])
def test_image_env_values_stay_on_one_dockerfile_line(project, value):
    project.deployment(
        "d", HEAD % "0.32.0" + f'    max-model-len: 4096\nimage:\n  env: {{NEWLINE: "{value}"}}\n'
    )
    error = only(check_paths([project.deployments]))
    assert error.rule == "image.env-control" and "another instruction" in error.message


@pytest.mark.parametrize(
    ("flag", "rule"),
    [
        ("chat-template: /proc/self/environ", "flags.reads-system-file"),
        ("ssl-keyfile: /root/.ssh/id_rsa", "flags.reads-system-file"),
        ("hf-config-path: /etc/../proc/1/environ", "flags.reads-system-file"),
        ("chat-template: /models/extra/template.jinja", "flags.reads-file"),
        ("enable-tokenizer-info-endpoint: true", "flags.exposes"),
    ],
)
def test_flags_that_read_or_show_container_files_are_findings(project, flag, rule):
    assert only(check(project, "0.32.0", flag)).rule == rule


def test_an_inline_chat_template_or_a_hub_tokenizer_is_no_finding(project):
    assert (
        check(
            project,
            "0.32.0",
            'chat-template: "{% for m in messages %}{{ m.content }}{% endfor '
            '%}"\ntokenizer: org/tok',
        ).diagnostics
        == ()
    )


@pytest.mark.parametrize(
    "value",
    [".cache/../../proc/self/environ", "//proc/self/environ", "../proc/self", "~/.ssh/id_rsa"],
)
def test_relative_and_doubled_paths_to_system_files_are_errors(project, value):
    # vLLM runs in /root in the container: a relative path starts there.
    assert (
        only(check(project, "0.32.0", f'chat-template: "{value}"')).rule
        == "flags.reads-system-file"
    )


def test_a_relative_path_into_the_uploaded_folders_is_only_a_warning(project):
    assert (
        only(check(project, "0.32.0", 'chat-template: "sources/base/template.jinja"')).rule
        == "flags.reads-file"
    )


def test_json_flags_that_name_code_to_import_are_warnings(project):
    found = {
        d.rule: d
        for d in check(
            project,
            "0.32.0",
            "kv-transfer-config: {kv_connector: X, kv_role: kv_both, "
            "kv_connector_module_path: sources.adapters.a.evil}",
        ).diagnostics
    }
    warning, connects = found["flags.runs-code"], found["flags.exposes"]
    assert (
        len(found) == 2
        and (warning.rule, warning.severity.value) == ("flags.runs-code", "warning")
        and "kv_connector_module_path" in warning.message
    )
    assert (
        connects.rule == "flags.exposes"
        and "connects the engine to the KV cache store or peer it names" in connects.message
    )


def test_template_text_is_also_tried_as_a_path_to_a_system_file(project):
    # vLLM opens every chat-template value as a file first: a committed folder named `{` made
    # this value pass as inline text while it opens /proc/self/environ.
    value = "/root/sources/adapters/a/{/../../../../../proc/self/environ"
    assert (
        only(check(project, "0.11.2", f'chat-template: "{value}"')).rule
        == "flags.reads-system-file"
    )


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("scheduler-cls: pkg.Scheduler", "imports the class it names into the engine"),
        ("distributed-executor-backend: pkg.Executor", "imports the executor class"),
        (
            "compilation-config: {backend: pkg.mod.backend}",
            "names code vLLM would import or run (backend: pkg.mod.backend)",
        ),
        (
            "speculative-config: {model: evilpkg.Proposer, num_speculative_tokens: 2}",
            "model: evilpkg.Proposer",
        ),
        (
            'kv-transfer-config: \'{"kv_connector": "X", "kv_connector_module_path": "pkg.evil"}\'',
            "kv_connector_module_path",
        ),
    ],
)
def test_flags_naming_classes_to_import_are_warnings_even_as_json_text(project, flag, words):
    (warning,) = [
        d for d in check(project, "0.11.2", flag).diagnostics if d.rule != "flags.exposes"
    ]  # kv-transfer-config also connects
    assert (warning.rule, warning.severity.value) == (
        "flags.runs-code",
        "warning",
    ) and words in warning.message


def test_built_in_executors_and_compilation_backends_are_no_finding(project):
    assert (
        check(
            project,
            "0.11.2",
            "distributed-executor-backend: mp\ncompilation-config: {backend: inductor}",
        ).diagnostics
        == ()
    )
    # (a Hub draft model is unchecked: that is its own warning, checks/model_config.py)
    found = check(
        project,
        "0.32.0",
        "speculative-config: {model: org/draft, num_speculative_tokens: 2, "
        "draft_load_config: {load_format: safetensors}}",
    ).diagnostics
    assert [d.rule for d in found] == ["model.config-loads-model"]


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        ("chat-templat: /proc/self/environ", "flags.abbreviated"),
        ("trust-remote-cod: true", "flags.abbreviated"),
        ("chat-template: [/proc/self/environ]", "flags.reads-system-file"),
    ],
)
def test_without_a_catalog_abbreviations_and_lists_cannot_hide_a_file_or_code_flag(
    project, args, rule
):
    found = [d for d in check(project, "0.12.0", args).diagnostics if d.rule != "flags.no-catalog"]
    assert [(d.rule, d.severity.value) for d in found] == [(rule, "error")]


@pytest.mark.parametrize(
    ("args", "exposed"),
    [
        (
            "disable-tokenizer-info-endpoint: false",
            True,
        ),  # renders --enable-tokenizer-info-endpoint
        ("disable-tokenizer-info-endpoint: true", False),
        ("enable-tokenizer-info-endpoint: false", False),
    ],
)
def test_what_a_flag_exposes_is_judged_on_what_vllm_is_given(project, args, exposed):
    assert [d.rule for d in check(project, "0.33.0", args).diagnostics] == (
        ["flags.exposes"] if exposed else []
    )


def test_model_class_overrides_are_code(project):
    warning = only(
        check(project, "0.32.0", "model-class-overrides: {Qwen3ForCausalLM: 'evilpkg.model:Evil'}")
    )
    assert (
        warning.rule == "flags.runs-code"
        and "imports the model classes it names" in warning.message
    )


def test_a_spec_model_that_is_a_class_name_is_code_and_a_repo_is_not(project):
    warning = only(check(project, "0.32.0", "spec-model: evilpkg.Proposer"))
    assert (warning.rule, warning.severity.value) == ("flags.runs-code", "warning")
    assert check(project, "0.32.0", "spec-model: Qwen/Qwen3-0.6B").diagnostics == ()


def test_addresses_inside_json_flags_and_tool_servers_are_pointed_out(project):
    found = check(
        project,
        "0.32.0",
        "kv-events-config: {enable_kv_cache_events: true, publisher: zmq, endpoint: "
        "'tcp://collector.example:5557'}",
    ).diagnostics
    assert [d.rule for d in found] == ["flags.exposes", "flags.exposes"]
    assert any("tcp://collector.example:5557" in d.message for d in found) and any(
        "publishes every request's token ids" in d.message for d in found
    )
    assert only(check(project, "0.32.0", "tool-server: tools.example:8000")).rule == "flags.exposes"


def test_json_text_nested_deeper_than_python_recurses_is_a_plain_value(project):
    # A 500-deep JSON text in any flag made the walk for code keys an internal error.
    assert (
        check(project, "0.32.0", "response-role: '" + "[" * 500 + "]" * 500 + "'").diagnostics == ()
    )


def test_an_image_python_without_safe_path_is_a_warning_when_folders_are_uploaded(project):
    project.write(
        "adapters/a/adapter_config.json",
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}),
    )
    project.write("adapters/a/adapter_model.safetensors", "")
    project.deployment(
        "d",
        HEAD
        % "0.32.0"
        + "    max-model-len: 4096\nimage: {python: '3.10'}\nadapters: [{name: a, path: "
        "../adapters/a}]\n",
    )
    rules = [d.rule for d in check_paths([project.deployments]).diagnostics]
    assert "flags.importable-sources" in rules
    project.deployment("d", HEAD % "0.32.0" + "    max-model-len: 4096\nimage: {python: '3.10'}\n")
    assert "flags.importable-sources" not in [
        d.rule for d in check_paths([project.deployments]).diagnostics
    ]


@pytest.mark.parametrize(
    "flag",
    [
        "root-path: /v",
        "root-path: /",
        "uds: /tmp/vllm.sock",
        "headless: true",
        "grpc: true",
        "grpc-port: 50051",
    ],
)
def test_flags_that_move_or_stop_the_served_api_are_owned(project, flag):
    # vLLM's API key check strips the root path before looking for /v1: with `/v`, /v1/... was
    # served without the key. A socket or a headless server would not answer on port 8000.
    error = only(check(project, "0.33.0", flag))
    assert error.rule == "flags.managed"


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        ("mm-encoder-fp8-scale-path: /proc/self/environ", "flags.reads-system-file"),
        ("default-mm-loras: {image: /root/.ssh/lora}", "flags.reads-system-file"),
        ("default-mm-loras: {image: /models/lora}", "flags.reads-file"),
        (
            "kv-transfer-config: {kv_connector: P2pNcclConnector, kv_role: kv_producer, "
            "kv_ip: 203.0.113.5}",
            "flags.exposes",
        ),
        ("master-addr: evil.example.com", "flags.exposes"),
        ("enable-fault-tolerance: true", "flags.exposes"),
        ("profiler-config: {profiler: torch}", "flags.exposes"),
        ("trust-request-chat-template: true", "flags.exposes"),
        ("enable-log-requests: true", "flags.exposes"),
    ],
)
def test_more_flags_that_read_files_open_routes_or_send_data_are_findings(project, args, rule):
    assert {d.rule for d in check(project, "0.33.0", args).diagnostics} == {rule}


@pytest.mark.parametrize(
    "base",
    [
        "nvidia/cuda:12.8.0-devel-ubuntu22.04",
        "nvcr.io/nvidia/cuda:12.4.1-devel-ubuntu22.04",
        "docker.io/nvidia/cuda:12.8.0-runtime-ubuntu24.04@sha256:" + "a" * 64,
    ],
)
def test_nvidias_cuda_images_are_no_finding(project, base):
    project.deployment("d", HEAD % "0.32.0" + f"    max-model-len: 4096\nimage:\n  base: {base}\n")
    assert check_paths([project.deployments]).diagnostics == ()


@pytest.mark.parametrize(
    "base",
    [
        "ghcr.io/someone/cuda:12.8.0-devel-ubuntu22.04",
        "nvidia/cudax:latest",
        "nvidia-cuda:12",
        "vllm/vllm-openai:latest",
    ],
)
def test_any_other_base_image_is_code_to_review(project, base):
    project.deployment("d", HEAD % "0.32.0" + f"    max-model-len: 4096\nimage:\n  base: {base}\n")
    warning = only(check_paths([project.deployments]))
    assert (warning.rule, warning.severity.value, warning.line) == (
        "image.base-unreviewed",
        "warning",
        9,
    )


def test_packages_beyond_the_apps_own_are_code_to_review(project):
    # A package's vllm.general_plugins entry point runs in the API server, beside the Secrets and the key guard.
    project.deployment(
        "d",
        HEAD % "0.32.0" + "    max-model-len: 4096\nimage:\n  pip: [huggingface-hub==0.36.0, "
        "hf_transfer==0.1.9, HF-Xet, vllm-tiny-helpers==0.1.0, 'torch>=2']\n",
    )
    warnings = check_paths([project.deployments]).diagnostics
    assert [(w.rule, w.path) for w in warnings] == [
        ("image.pip-code", ("image", "pip", 3)),
        ("image.pip-code", ("image", "pip", 4)),
    ]
    assert (
        "installs vllm-tiny-helpers" in warnings[0].message
        and "installs torch" in warnings[1].message
    )


def test_every_flag_of_the_shipped_catalogs_has_been_reviewed():
    # A new catalog (scripts/extract_vllm_flags.py) brings new flags: each is read in vLLM's
    # source and listed as tuning (deployer/data/vllm_flags_reviewed.json) or as code, file or
    # exposing in checks/flags.py before the catalog ships.
    from deployer.checks.flags import _reviewed

    for version in catalog.available_versions():
        unreviewed = sorted(
            name
            for name in {flag.name for flag in catalog.load(version).flags.values()}
            if not _reviewed(name)
        )  # aliases share a Flag
        assert unreviewed == [], version


def test_a_flag_nobody_reviewed_is_a_warning_to_read_it_as_code(project, monkeypatch):
    import deployer.checks.flags as flags_check

    reviewed, versions = flags_check.reviewed_flags()
    monkeypatch.setattr(
        flags_check, "reviewed_flags", lambda: (reviewed - {"max-num-seqs"}, versions)
    )  # as if new in a release
    warning = only(check(project, "0.32.0", "max-num-seqs: 8"))
    assert (warning.rule, warning.severity.value, warning.path) == (
        "flags.unreviewed",
        "warning",
        ("vllm", "args", "max-num-seqs"),
    )
    assert (
        "--max-num-seqs is not among the flags reviewed" in warning.message
        and "0.11.2, 0.32.0, 0.33.0" in warning.message
    )


@pytest.mark.parametrize(
    ("args", "found"),
    [
        ("log-level: DEBUG", ["flags.exposes"]),
        ("log-level: NOTSET", ["flags.exposes"]),
        ("log-level: INFO", []),
        ("load-format: runai_streamer", ["flags.exposes"]),
        ("load-format: tensorizer", ["flags.exposes"]),
        ("load-format: safetensors", []),
        ("kv-offloading-backend: lmcache", ["flags.exposes"]),
        ("kv-offloading-backend: native", []),
        ("data-parallel-backend: ray", ["flags.exposes"]),
        ("data-parallel-backend: mp", []),
    ],
)
def test_flags_that_expose_only_with_some_values_are_judged_by_the_value(project, args, found):
    assert [d.rule for d in check(project, "0.32.0", args).diagnostics] == found


@pytest.mark.parametrize(
    ("args", "rule", "words"),
    [
        (
            "logging-config: {pylogging_config_file: log.json}",
            "flags.runs-code",
            "hands a file (pylogging_config_file) to logging.config",
        ),
        ("code-revision: abc123", "flags.runs-code", "Python code that trust-remote-code runs"),
        (
            "hf-overrides: {auto_map: {AutoModel: 'org/repo--modeling.Model'}}",
            "flags.runs-code",
            "auto_map",
        ),
        ("mm-processor-kwargs: {trust_remote_code: true}", "flags.runs-code", "trust_remote_code"),
        (
            "model-loader-extra-config: {s3_endpoint: 'https://s3.example.com'}",
            "flags.exposes",
            "https://s3.example.com",
        ),
        (
            "mm-processor-kwargs: {proxies: 'proxy.example:3128'}",
            "flags.exposes",
            "proxy.example:3128",
        ),
        ("enable-prompt-embeds: true", "flags.exposes", "tensors the server deserializes"),
        ("tokens-only: true", "flags.exposes", "/abort_requests"),
        ("weight-transfer-config: {backend: nccl}", "flags.exposes", "replace the model's weights"),
        # torch reads these as raw settings: cpp.march reaches the C++ compiler's command line (a hunt
        # compiled a committed header into the server)
        (
            "compilation-config: {mode: 3, inductor_compile_config: {cpp.march: 'native "
            "-include /root/sources/models/base/evil.h'}}",
            "flags.runs-code",
            "inductor_compile_config",
        ),
        (
            'compilation-config: \'{"inductor_compile_config": '
            '{"aot_inductor.custom_op_libs": ["x"]}}\'',
            "flags.runs-code",
            "inductor_compile_config",
        ),
        (
            "speculative-config: {model: org/draft, num_speculative_tokens: 2, "
            "draft_load_config: {load_format: runai_streamer}}",
            "flags.exposes",
            "load_format: loads the weights from elsewhere",
        ),
    ],
)
def test_flags_found_by_the_review_to_run_code_or_reach_out_are_findings(
    project, args, rule, words
):
    (warning,) = [
        d
        for d in check(project, "0.32.0", args).diagnostics
        if d.rule != "model.config-loads-model"
    ]  # (a Hub draft's own warning)
    assert (warning.rule, warning.severity.value) == (rule, "warning") and words in warning.message


@pytest.mark.parametrize(
    "args",
    [
        # vLLM 0.32 expands 1k before reading the JSON: json.loads could not, so the code named inside went unseen.
        """compilation-config: '{"mode": 3, "inductor_passes": {"x": "evilpkg.passes.run"}, "compile_sizes": [1k]}'""",
        """ec-manager-config: '{"encoder_cache_manager_cls": "evilpkg.Mgr", "x": 1k}'""",
        """speculative-config: '{"model": "x",}'""",
    ],
)
def test_json_text_the_deployer_cannot_read_is_an_error(project, args):
    error = only(check(project, "0.32.0", args))
    assert (error.rule, error.is_error) == (
        "flags.value",
        True,
    ) and "this is not JSON" in error.message
    assert "YAML mapping" in error.hint


def test_relative_paths_inside_json_flags_are_judged_and_compiled_caches_are_code(project):
    found = check(
        project,
        "0.32.0",
        "compilation-config: {cache_dir: sources/models/base/.cc, debug_dump_path: sources/dump}",
    ).diagnostics
    assert sorted(d.rule for d in found) == [
        "flags.reads-file",
        "flags.runs-code",
    ]  # one finding per kind and flag
    code = next(d for d in found if d.rule == "flags.runs-code")
    assert "cache_dir" in code.message
    found = check(
        project, "0.32.0", "profiler-config: {profiler: torch, torch_profiler_dir: ../../proc/self}"
    ).diagnostics
    assert sorted(d.rule for d in found) == ["flags.exposes", "flags.reads-system-file"]


def test_a_json_value_too_large_to_judge_is_an_error(project):
    value = "[" + ",".join(["1"] * 100_001) + "]"
    error = only(check(project, "0.32.0", f"compilation-config: '{{\"compile_sizes\": {value}}}'"))
    assert (error.rule, error.is_error) == (
        "flags.value",
        True,
    ) and "more than 100,000 values" in error.message


def test_ray_as_the_executor_is_pointed_out_like_ray_for_data_parallelism(project):
    warning = only(check(project, "0.32.0", "distributed-executor-backend: ray"))
    assert warning.rule == "flags.runs-code" and "Ray cluster" in warning.message


def test_extras_of_a_known_package_are_code_to_review(project):
    project.deployment(
        "d",
        HEAD % "0.32.0"
        + "    max-model-len: 4096\nimage:\n  pip: ['huggingface-hub[gradio,fastai]>=0']\n",
    )
    warning = only(check_paths([project.deployments]))
    assert (
        warning.rule == "image.pip-code"
        and "installs huggingface-hub[gradio,fastai]" in warning.message
    )


@pytest.mark.parametrize(
    ("level", "found"),
    [
        ("info", []),
        ("WARNING", []),
        ("debug", ["image.env-exposes"]),
        ("DEBUG", ["image.env-exposes"]),
        ("NOTSET", ["image.env-exposes"]),
    ],
)
def test_vllm_logging_level_is_judged_like_the_log_level_flag(project, level, found):
    project.deployment(
        "d",
        HEAD % "0.32.0"
        + f"    max-model-len: 4096\nimage:\n  env: {{VLLM_LOGGING_LEVEL: {level}}}\n",
    )
    assert [d.rule for d in check_paths([project.deployments]).diagnostics] == found
