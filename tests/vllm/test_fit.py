"""GPU fit and cost, on real model configs (tests/fixtures/configs) in a Hugging Face cache."""

from __future__ import annotations

import json

import pytest

from deployer.checks.pipeline import check_paths
from deployer.spec.model import Gpu, _defaults
from deployer.vllm.fit import (
    GIB,
    compute,
    first_start,
    gpu_specs,
    model_shape,
    parse_tokens,
    usd_per_hour,
)

from ..conftest import FIXTURES, REPO

QWEN3_4B = (FIXTURES / "configs" / "Qwen--Qwen3-4B-Instruct-2507.json").read_text()
CHESS = (REPO / "deployments" / "chess-puzzle.yaml").read_text()


@pytest.fixture
def qwen_cached(hub_cache):
    hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": QWEN3_4B})


def chess_without_max_model_len(project):
    """The shipped chess-puzzle deployment and defaults, with no max-model-len."""
    project.write(
        "deployments/_defaults.yaml", (REPO / "deployments" / "_defaults.yaml").read_text()
    )
    start, end = (
        CHESS.index("vllm:\n"),
        CHESS.index("max-model-len: 65536\n") + len("max-model-len: 65536\n"),
    )
    project.deployment("chess-puzzle", CHESS[:start] + CHESS[end:])
    return check_paths([project.deployments])


def test_reference_model_arithmetic_matches_the_closed_form(project, qwen_cached):
    (deployment,) = chess_without_max_model_len(project).deployments
    shape = model_shape(deployment.base_model.info, {})
    assert shape.kv_bytes_per_token == 36 * 8 * 128 * 2 * 2 == 144 * 1024
    assert shape.kv_bytes_per_token * 262_144 == 36 * GIB
    assert round(shape.params / 1e9, 2) == 4.02
    assert round(shape.weight_bytes / GIB, 1) == 7.5
    assert shape.weights_counted == "config.json estimate"


def test_full_context_on_an_a10g_is_an_error_saying_what_fits(project, qwen_cached):
    checked = chess_without_max_model_len(project)
    (error,) = [d for d in checked.diagnostics if d.rule == "fit.kv-cache"]
    assert error.is_error and error.path == ("gpu",) and error.line == 12
    assert "262,144 tokens of context does not fit on A10G" in error.message
    assert "its KV cache needs 36.00 GiB" in error.message
    fit = compute(checked.deployments[0], model_shape(checked.deployments[0].base_model.info, {}))
    assert f"set vllm.args.max-model-len to at most {fit.max_fitting_len:,}" in error.hint
    assert 65_536 < fit.max_fitting_len < 90_000
    assert "H100 ($3.95/h)" in error.hint or "A100-80GB ($2.50/h)" in error.hint


def test_shipped_chess_puzzle_uses_a_context_that_fits(project, qwen_cached):
    project.write(
        "deployments/_defaults.yaml", (REPO / "deployments" / "_defaults.yaml").read_text()
    )
    project.deployment("chess-puzzle", CHESS)
    checked = check_paths([project.deployments])
    assert not [d for d in checked.diagnostics if d.rule.startswith("fit.")]
    (deployment,) = checked.deployments
    fit = compute(deployment, model_shape(deployment.base_model.info, dict(deployment.vllm.args)))
    assert fit.fits and fit.max_model_len_source == "vllm.args.max-model-len"


def test_offline_without_the_model_the_fit_is_skipped_with_a_reason(project, hub_cache):
    checked = chess_without_max_model_len(project)
    assert not [d for d in checked.diagnostics if d.rule.startswith("fit.")]
    (skipped,) = checked.notes
    assert (
        skipped.rule == "fit.skipped"
        and "Qwen/Qwen3-4B-Instruct-2507 is not in the local Hugging Face cache" in skipped.message
    )


def test_max_model_len_beyond_the_model_is_an_error(project, qwen_cached):
    project.deployment(
        "big",
        "base_model: {repo: Qwen/Qwen3-4B-Instruct-2507}\ngpu: H100\nvllm: {version: "
        "'0.11.2', args: {max-model-len: 300000}}\nauth: none\n",
    )
    (error,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule.startswith("fit.")
    ]
    assert error.rule == "fit.beyond-model" and "262,144" in error.message


def test_weights_are_counted_exactly_from_local_safetensors(project):
    from ..tiny_model import build_base_model

    build_base_model(project.root / "models" / "tiny")
    project.deployment(
        "tiny",
        "base_model: {path: ../models/tiny, served_name: tiny}\ngpu: T4\nvllm: "
        "{version: '0.11.2'}\nauth: none\n",
    )
    (deployment,) = check_paths([project.deployments]).deployments
    shape = model_shape(deployment.base_model.info, {})
    header_params = sum(
        v
        for v in [
            320 * 128
            + 128
            + 2 * (2 * 128 + 2 * 64 + 128 * 128 + 2 * 64 * 128 + 128 * 128 + 3 * 256 * 128)
        ]
    )
    assert shape.weights_counted == "safetensors headers"
    assert shape.params == header_params


def test_tensor_parallel_gpus_add_their_memory(project, qwen_cached):
    (deployment,) = chess_without_max_model_len(project).deployments
    shape = model_shape(deployment.base_model.info, {})
    one, two = (
        compute(deployment, shape, Gpu("H100", 1)),
        compute(deployment, shape, Gpu("H100", 2)),
    )
    assert two.total_bytes == 2 * one.total_bytes and two.fits


def test_gpu_data_covers_every_schema_gpu_type_with_a_source():
    from deployer.spec.schema import schema

    data = json.loads((REPO / "deployer" / "data" / "gpus.json").read_text())
    assert data["source"] and data["retrieved"]
    assert set(gpu_specs()) == set(schema()["$defs"]["gpu_type"]["examples"])
    assert (
        round(usd_per_hour(Gpu("A10G")), 2) == 1.10
        and round(usd_per_hour(Gpu("H100", 2)), 2) == 7.90
    )


@pytest.mark.parametrize(
    ("text", "tokens"), [(4096, 4096), ("4k", 4000), ("4K", 4096), ("32k", 32000), ("auto", None)]
)
def test_context_lengths_parse_as_vllm_reads_them(text, tokens):
    assert parse_tokens(text) == tokens


def test_fit_command_prints_the_breakdown_and_the_cheaper_gpu(project, qwen_cached, cli):
    project.write(
        "deployments/_defaults.yaml", (REPO / "deployments" / "_defaults.yaml").read_text()
    )
    project.deployment("chess-puzzle", CHESS)
    code, out, _ = cli("fit", "chess-puzzle")
    assert code == 0
    assert "- weights (4.02 B params, bfloat16)          7.49 GiB  from config.json estimate" in out
    assert "KV cache per token                          144.0 KiB" in out
    assert "max-model-len 65,536 needs                   9.00 GiB  fits" in out
    assert "cost per warm hour: $1.10 (A10G)" in out
    assert "cheaper GPU that fits this deployment: L4 $0.80/h" in out


def test_fit_command_json_exits_one_when_it_does_not_fit(project, qwen_cached, cli):
    chess_without_max_model_len(project)
    code, out, _ = cli("fit", "chess-puzzle", "--format", "json")
    (report,) = json.loads(out)
    assert code == 1 and report["fits"] is False
    assert report["kv_bytes_per_token"] == 147_456 and report["needed_kv_bytes"] == 36 * GIB
    assert report["max_fitting_len"] % 1024 == 0 and report["gpus_fitting_max_model_len"]


def test_fit_command_without_the_model_says_why(project, hub_cache, cli):
    chess_without_max_model_len(project)
    code, _, err = cli("fit", "chess-puzzle")
    assert code == 1 and "not in the local Hugging Face cache" in err


def test_fit_without_names_tabulates_every_deployment(shipped_copy, cli):
    code, out, _ = cli("fit")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["DEPLOYMENT", "GPU", "FITS"]
    assert lines[1].split()[:6] == ["chess-puzzle", "A10G", "yes", "65,536", "80,896", "1.10"]
    assert lines[1].endswith("L4 ($0.80/h)")  # the reference's own note: an A10G may be oversized
    assert lines[2].split()[:3] == ["qwen3-4b-multi", "L40S", "yes"]


@pytest.fixture
def shipped_copy(project, qwen_cached):
    for path in (REPO / "deployments").glob("*.yaml"):
        project.write(f"deployments/{path.name}", path.read_text())
    return project


T4_QWEN = (
    "base_model: {repo: Qwen/Qwen3-4B-Instruct-2507}\ngpu: T4\nvllm:\n  version: "
    "'0.32.0'\n  args: {max-model-len: 4096%s}\nauth: {proxy: true}\n"
)


def test_explicit_bfloat16_on_a_gpu_without_it_is_an_error(project, qwen_cached):
    project.deployment("t4", T4_QWEN % ", dtype: bfloat16")
    (error,) = [d for d in check_paths([project.deployments]).diagnostics if d.rule == "gpu.dtype"]
    assert error.is_error and (error.line, error.column) == (5, 38)
    assert "T4 has no bfloat16 (compute capability 7.5; vLLM needs 8.0)" in error.message
    assert error.hint.startswith("use dtype: float16 (or auto), or a GPU with bfloat16 such as L4")


def test_a_bfloat16_model_on_a_gpu_without_it_warns_of_the_float16_fallback(project, qwen_cached):
    project.deployment("t4", T4_QWEN % "")
    (warning,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "gpu.dtype-fallback"
    ]
    assert (
        not warning.is_error and "vLLM will serve this bfloat16 model in float16" in warning.message
    )
    project.deployment("t4", T4_QWEN % ", dtype: float16")
    assert [
        d for d in check_paths([project.deployments]).diagnostics if d.rule.startswith("gpu.dtype")
    ] == []


def test_gpus_without_bfloat16_are_not_suggested_for_an_explicit_bfloat16(project, qwen_cached):
    from deployer.vllm.fit import cheapest_fitting

    project.deployment("t4", T4_QWEN.replace("gpu: T4", "gpu: H100") % ", dtype: bfloat16")
    (deployment,) = check_paths([project.deployments]).deployments
    shape = model_shape(deployment.base_model.info, dict(deployment.vllm.args))
    assert "T4" not in [g.type for g, _ in cheapest_fitting(deployment, shape, 4096, limit=20)]
    assert gpu_specs()["T4"].compute_capability == (7, 5) and all(
        s.has_bfloat16 for n, s in gpu_specs().items() if n != "T4"
    )


@pytest.mark.parametrize("text", ["9" * 400, "1" + "0" * 30 + "k"])
def test_a_context_length_beyond_any_float_is_not_a_number_of_tokens(text):
    assert parse_tokens(text) is None


def test_absurd_sizes_in_a_local_model_are_not_sized_and_do_not_crash(project, cli):
    model = project.root / "models" / "m"
    model.mkdir(parents=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 10**306,
        "max_position_embeddings": 1e10,
        "rope_scaling": {"type": "linear", "factor": 1e308},
    }
    (model / "config.json").write_text(json.dumps(config))
    project.deployment(
        "x",
        "base_model: {path: ../models/m, served_name: m}\ngpu: A10G\nvllm: {version: "
        "'0.11.2'}\nauth: {proxy: true}\n",
    )
    for command in (("validate",), ("fit", "x"), ("render",)):
        code, out, err = cli(*command)
        assert "internal error" not in err, (command, err)
    assert "not a positive whole number" in cli("validate")[1]


def shipped_chess_puzzle(project, **replace: str):
    defaults = (REPO / "deployments" / "_defaults.yaml").read_text()
    for old, new in replace.items():
        defaults = defaults.replace(old, new)
    project.write("deployments/_defaults.yaml", defaults)
    project.deployment("chess-puzzle", CHESS)
    (deployment,) = check_paths([project.deployments]).deployments
    return deployment


def test_a_first_start_of_the_shipped_example_fits_the_default_start_budget(project, qwen_cached):
    deployment = shipped_chess_puzzle(project)
    shape = model_shape(deployment.base_model.info, dict(deployment.vllm.args))
    start = first_start(deployment, shape.weight_bytes)
    # 8 GB from the Hub at 50 MB/s, read back at 200 MB/s, and vLLM's own start.
    assert (start.download, start.load, start.engine, start.compile) == (161, 41, 90, 0)
    assert (
        start.total <= deployment.scaling.startup_timeout == _defaults("scaling")["startup_timeout"]
    )


def test_the_start_budget_holds_the_first_compile_without_enforce_eager(project, qwen_cached):
    deployment = shipped_chess_puzzle(project, **{"enforce-eager: true": "enforce-eager: false"})
    shape = model_shape(deployment.base_model.info, dict(deployment.vllm.args))
    start = first_start(deployment, shape.weight_bytes)
    assert start.compile > 0 and start.total <= deployment.scaling.startup_timeout


def test_fit_shows_requests_per_container_and_the_first_start(project, qwen_cached, cli):
    shipped_chess_puzzle(project)
    code, out, _ = cli("fit", "chess-puzzle")
    assert code == 0
    assert (
        "requests per container: up to 256 at once, Modal adds a container above 192 "
        "(vLLM 0.11.2's max-num-seqs on A10G); at most 4 containers"
    ) in out
    assert (
        "first start on a fresh volume (estimate): download 161 s + load 41 s + vLLM start 90 s "
        "= 292 s, within startup_timeout 600 s"
    ) in out


def test_fit_json_has_the_concurrency_and_the_start_budget(project, qwen_cached, cli):
    deployment = shipped_chess_puzzle(project)
    project.deployment("chess-puzzle", CHESS.replace("max-model-len: 65536", "max-num-seqs: 32"))
    code, out, _ = cli("fit", "chess-puzzle", "--format", "json")
    (report,) = json.loads(out)
    assert report["concurrency"] == {
        "max_inputs": 32,
        "target_inputs": 24,
        "from": "vllm.args.max-num-seqs",
    }
    assert report["first_start_seconds"]["total"] <= report["startup_timeout"] == 600
    assert report["max_containers"] == deployment.scaling.max_containers == 4


def test_money_is_whole_cents_in_every_format():
    from deployer.vllm.fit import cents_per_hour

    assert cents_per_hour(Gpu("A10G")) == 110 and usd_per_hour(Gpu("A10G")) == 1.1
    assert cents_per_hour(Gpu("H100", 2)) == 790
    assert cents_per_hour(Gpu("RTX-PRO-6000")) is None


def test_fit_shows_the_price_offline_in_the_table_and_in_cents_in_json(project, cli):
    chess_without_max_model_len(project)  # no model config in the cache: nothing can be sized
    code, out, _ = cli("fit", "chess-puzzle", "--format", "json")
    (report,) = json.loads(out)
    assert code == 1 and report["fits"] is None and report["cents_per_warm_hour"] == 110
    code, out, _ = cli("fit")
    assert out.splitlines()[1].split()[:4] == ["chess-puzzle", "A10G", "?", "1.10"]


def test_the_tables_cheapest_gpu_holds_the_context_the_breakdown_asks_for(
    project, qwen_cached, cli
):
    chess_without_max_model_len(project)  # the model's full 262,144 tokens: not on one A10G
    _, out, _ = cli("fit", "chess-puzzle", "--format", "json")
    (report,) = json.loads(out)
    cheapest = report["gpus_fitting_max_model_len"][0]
    assert report["cheapest_fitting_gpu"] == cheapest
    assert isinstance(cheapest["cents_per_hour"], int)
    _, out, _ = cli("fit")
    dollars = f"{cheapest['cents_per_hour'] // 100}.{cheapest['cents_per_hour'] % 100:02d}"
    assert out.splitlines()[1].endswith(f"{cheapest['gpu']} (${dollars}/h)")
    _, out, _ = cli("fit", "chess-puzzle")
    assert f"GPUs that hold 262,144 tokens: {cheapest['gpu']} ${dollars}/h" in out


def test_a_bfloat16_checkpoint_is_not_offered_a_gpu_without_bfloat16(project, qwen_cached):
    from deployer.vllm.fit import cheapest_fitting

    project.deployment("t4", T4_QWEN.replace("gpu: T4", "gpu: H100") % "")  # dtype: auto
    (deployment,) = check_paths([project.deployments]).deployments
    shape = model_shape(deployment.base_model.info, dict(deployment.vllm.args))
    assert shape.dtype == "bfloat16"
    assert "T4" not in [g.type for g, _ in cheapest_fitting(deployment, shape, 4096, limit=20)]
    project.deployment("t4", T4_QWEN.replace("gpu: T4", "gpu: H100") % ", dtype: float16")
    (deployment,) = check_paths([project.deployments]).deployments
    shape = model_shape(deployment.base_model.info, dict(deployment.vllm.args))
    assert "T4" in [g.type for g, _ in cheapest_fitting(deployment, shape, 4096, limit=20)]
