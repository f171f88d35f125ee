"""What one run may spend: the deployment files, values and characters it checks (one file under
many names, defaults merged into each file, aliases), the memory its parses make, the folders it
walks and the safetensors headers it reads; and what many deployments share is worked out once.
Work is measured by counts (reads, walks, lines run), never by a stopwatch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deployer.checks.pipeline import check_paths

from ..conftest import MINIMAL
from .helpers import (
    LLAMA_CONFIG,
    LOCAL_MODEL_DEPLOYMENT,
    lines_run,
    local_model,
    rules,
    write_safetensors,
)


def test_a_defaults_mapping_of_many_keys_merges_in_linear_time(project, cli):
    def validate(keys: int) -> None:
        project.write(
            "deployments/_defaults.yaml", "x:\n" + "".join(f"  k{i}: 1\n" for i in range(keys))
        )
        project.deployment("a", MINIMAL + "x: {}\n")
        code, out, _ = cli("validate")
        assert code == 1 and "unknown key 'x'" in out

    # Twice the keys, about twice the lines run: scanning every position per merged key would
    # make it four times.
    small, large = lines_run(lambda: validate(2_000)), lines_run(lambda: validate(4_000))
    assert large < 3 * small, (small, large)


OVERRIDES = "  args:\n    hf-overrides: {" + ", ".join(f"k{i}: 0" for i in range(600)) + "}\n"


@pytest.mark.parametrize(("limit", "value", "defaults", "stops_at"), [
    ("MAX_RUN_VALUES", 2_000, "", "d3.yaml"),  # 600-odd values a file: the fourth goes over
    ("MAX_RUN_VALUES", 2_000, OVERRIDES, "d2.yaml"),  # defaults count once per deployment they reach
    ("MAX_RUN_FILES", 3, "", "d3.yaml"),
    ("MAX_RUN_BYTES", 12_000, "", "d2.yaml"),  # about 5 KB a file
    # one long value in the defaults goes into every app rendered from the files beside it
    ("MAX_RUN_BYTES", 12_000, "LONG", "d1.yaml"),
])  # fmt: skip
def test_one_big_file_under_many_names_stops_at_the_runs_budget(
    project, monkeypatch, limit, value, defaults, stops_at
):
    # git stores a file once whatever its names, yet each name is loaded, merged and checked
    # again; a large _defaults.yaml is merged into every small file beside it.
    import deployer.checks.pipeline

    monkeypatch.setattr(deployer.checks.pipeline, limit, value)
    body = (
        MINIMAL.replace('version: "0.11.2"', 'version: "0.11.2"\n' + OVERRIDES)
        if not defaults
        else MINIMAL
    )
    if defaults == "LONG":
        project.write(
            "deployments/_defaults.yaml", f"image:\n  env: {{PYTHONUNBUFFERED: '{'1' * 5000}'}}\n"
        )
    elif defaults:
        project.write("deployments/_defaults.yaml", "vllm:\n" + defaults)
    for i in range(6):
        project.deployment(f"d{i}", body)
    checked = check_paths([project.deployments])
    (error,) = checked.diagnostics
    assert (error.file, error.line, error.rule, error.is_error) == (
        f"deployments/{stops_at}",
        1,
        "files.too-many",
        True,
    )
    assert (
        "the files after this one are not checked" in error.message
        and "fewer files or folders" in error.hint
    )
    assert f"deployments/d{int(stops_at[1]) + 1}.yaml" not in checked.files


def test_text_repeated_by_aliases_counts_as_often_as_it_is_rendered(project, monkeypatch):
    # Aliases repeat text without repeating its bytes; the rendered apps hold every expansion.
    import deployer.checks.pipeline

    monkeypatch.setattr(deployer.checks.pipeline, "MAX_RUN_CHARS", 250_000)
    aliases = "".join(f"    E{i}: *x\n" for i in range(1, 50))
    for i in range(4):
        project.deployment(
            f"d{i}", MINIMAL + f"image:\n  env:\n    E0: &x '{'1' * 2000}'\n" + aliases
        )
    assert (
        project.deployments / "d0.yaml"
    ).stat().st_size < 3000  # 100,000 characters once expanded
    errors = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "files.too-many"
    ]
    assert [(e.file, e.line) for e in errors] == [
        ("deployments/d2.yaml", 1)
    ] and "aliases expanded" in errors[0].message


@pytest.mark.parametrize(
    "item", ["-6", "257", "1e1", "{}", "[]", '"x"', '{"k": 1}', "null", '"\\u00e9"']
)
def test_the_parse_estimate_is_never_below_what_json_makes_in_memory(item):
    # `-6,` is 3 bytes of text but a 28-byte int in memory (outside CPython's small-int cache):
    # the budget holds only if the estimate counts what parsing makes, not the text.
    import tracemalloc

    from deployer.core.budget import parsed_size

    text = ("[" + ",".join([item] * 200_000) + "]").encode()
    tracemalloc.start()
    parsed = json.loads(text)
    made = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del parsed
    assert parsed_size(text) >= made


def test_running_out_of_memory_is_a_message_not_a_traceback(cli, monkeypatch):
    import deployer.cli.check as deployer_cli

    def exhausted(args):
        raise MemoryError

    monkeypatch.setattr(deployer_cli, "cmd_validate", exhausted)
    code, out, err = cli("validate")
    assert (
        code == 1 and err.startswith("deployer validate: out of memory") and "Traceback" not in err
    )


def test_one_adapter_folder_named_by_many_adapters_is_read_walked_and_resolved_once(
    project, monkeypatch
):
    import deployer.sources.folders as sources
    from deployer.core import budget, paths

    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "x": [{}] * 100_000})
    )
    for i in range(50):
        (adapter / f"f{i}").write_text("")
    project.deployment(
        "x",
        MINIMAL
        + "adapters:\n"
        + "".join(f"  - {{name: a{i}, path: ../adapters/a}}\n" for i in range(300)),
    )
    walks = []
    real_walk = sources.walk
    monkeypatch.setattr(sources, "walk", lambda folder: walks.append(folder) or real_walk(folder))
    resolved, real_real = [], paths._real
    monkeypatch.setattr(paths, "_real", lambda path: resolved.append(path) or real_real(path))
    opened, real_open = [], budget._read_limited
    monkeypatch.setattr(
        budget, "_read_limited", lambda path, limit: opened.append(path) or real_open(path, limit)
    )
    check_paths([project.deployments])
    assert len(walks) == 1 and len(opened) == 1
    assert len(resolved) < 100, f"{len(resolved)} link resolutions for 300 adapters on one folder"


def test_one_folder_written_many_ways_is_walked_once(project, cli, monkeypatch):
    # `../m`, `.././m`, `../m/./.`...: one folder, however it is spelled.
    import deployer.sources.folders as sources

    (project.root / "m").mkdir()
    (project.root / "m" / "adapter_config.json").write_text(
        '{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}'
    )
    adapters = "".join(f"  - {{name: a{k}, path: '../{'./' * k}m'}}\n" for k in range(30))
    adapters += "".join(f"  - {{name: b{k}, path: '../m/{'./' * k}'}}\n" for k in range(30))
    project.deployment("x", MINIMAL + "adapters:\n" + adapters)
    walks = []
    real_walk = sources._walk
    monkeypatch.setattr(
        sources,
        "_walk",
        lambda folder, yaml_folder: walks.append(folder) or real_walk(folder, yaml_folder),
    )
    rules(cli)
    assert len(walks) == 1


def test_walking_local_folders_has_a_budget_per_run(project, cli, monkeypatch):
    # One adapter per level of a chain of folders above many files walks those files once per
    # level: here 20 levels above 50 files, against a budget of 500.
    import deployer.sources.folders as sources

    monkeypatch.setattr(sources, "MAX_RUN_ENTRIES", 500)
    folder = project.root / "m"
    paths = []
    for level in range(20):
        folder = folder / "d"
        paths.append("../m" + "/d" * (level + 1))
    folder.mkdir(parents=True)
    for i in range(50):
        (folder / f"f{i}").write_text("x")
    project.deployment(
        "x",
        MINIMAL
        + "adapters:\n"
        + "".join(f"  - {{name: a{i}, path: '{p}'}}\n" for i, p in enumerate(paths)),
    )
    code, out, err = cli("validate", "--format", "json")
    found = [d for d in json.loads(out)["diagnostics"] if d["rule"] == "sources.too-many-files"]
    assert (
        code == 1 and found and "this run has walked 500 files and folders" in found[0]["message"]
    )


def test_shards_linked_to_one_file_read_its_header_once(project, monkeypatch):
    import deployer.sources.base_model as basemodel

    model = local_model(project)
    write_safetensors(
        model / "model.safetensors",
        {
            "model.layers.0.self_attn.q_proj.weight": {
                "dtype": "BF16",
                "shape": [64, 64],
                "data_offsets": [0, 8192],
            }
        },
    )
    names = [f"s{i}.safetensors" for i in range(5)]
    for name in names:
        (model / name).symlink_to("model.safetensors")
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"t{i}": name for i, name in enumerate(names)}})
    )
    for name in (
        "h0.safetensors",
        "h1.safetensors",
    ):  # hard links too (a ref's export writes one per name)
        os.link(model / "model.safetensors", model / name)
    (model / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    f"t{i}": name
                    for i, name in enumerate(names + ["h0.safetensors", "h1.safetensors"])
                }
            }
        )
    )
    reads = []
    real_read = basemodel._header_bytes
    monkeypatch.setattr(
        basemodel, "_header_bytes", lambda path: reads.append(path) or real_read(path)
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    project.deployment(
        "y",
        "base_model: {path: ../models/m, served_name: m}\ngpu: L4\nvllm: {version: "
        "'0.11.2'}\nauth: {proxy: true}\n",
    )
    check_paths([project.deployments])
    assert len(reads) == 1  # eight names, two deployments: one read


def test_safetensors_headers_have_a_tensor_budget_per_model_and_per_run(project, cli, monkeypatch):
    # A 16 MB header can list 2.6 million tiny tensors, each kept: budgets per model and per run.
    import deployer.sources.base_model as basemodel

    monkeypatch.setattr(basemodel, "MAX_TENSORS", 1000)
    monkeypatch.setattr(basemodel, "MAX_RUN_TENSORS", 1500)
    for i, count in enumerate((1001, 900, 900)):
        model = project.root / "models" / f"m{i}"
        model.mkdir(parents=True)
        (model / "config.json").write_text(LLAMA_CONFIG)
        write_safetensors(
            model / "model.safetensors",
            {f"t{j}": {"dtype": "F16", "shape": [1]} for j in range(count)},
        )
        project.deployment(
            f"d{i}",
            LOCAL_MODEL_DEPLOYMENT.replace("models/m,", f"models/m{i},").replace(
                "served_name: m", f"served_name: m{i}"
            ),
        )
    code, out, err = cli("validate", "--format", "json")
    notes = [n["message"] for n in json.loads(out)["notes"]]
    assert "internal error" not in err
    assert any("lists 1,001 tensors; no model has more than 1,000" in n for n in notes), notes
    assert any("this run has read 1,500 tensors' headers already" in n for n in notes), notes


def test_what_deployments_share_is_worked_out_once_per_run(project, monkeypatch):
    import deployer.deploy.desired as desired_module
    import deployer.sources.base_model as basemodel
    from deployer.deploy.desired import desired, project_for

    local_model(project)
    for name in "abcde":
        project.deployment(name, LOCAL_MODEL_DEPLOYMENT)
    reads, hashes = [], []
    real_read, real_hash = basemodel.read_base_model, desired_module.folder_hash
    monkeypatch.setattr(
        basemodel, "read_base_model", lambda source: reads.append(source) or real_read(source)
    )
    monkeypatch.setattr(
        desired_module, "folder_hash", lambda folder: hashes.append(folder) or real_hash(folder)
    )
    checked = check_paths([project.deployments])
    desired(checked.deployments, Path("build"), project_for(project.deployments))
    assert len(reads) == 1 and len(hashes) == 1
