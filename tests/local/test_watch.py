"""What `serve --local` does with an edit of the YAML it serves: a dynamic deployment takes new and
updated adapters while it runs; any other change needs a restart, and the watch says which."""

from __future__ import annotations

import json

import pytest

from deployer.checks.pipeline import check_paths
from deployer.local.watch import FileWatch, adapter_change

DYNAMIC = """\
base_model: {{repo: Qwen/Qwen3-4B-Instruct-2507}}
adapter_loading: {loading}
adapters:
{adapters}
gpu: A10G
vllm: {{version: "0.11.2", args: {{max-model-len: 8192{args}}}}}
auth: none
"""


def adapter_folder(project, name: str, rank: int = 8):
    folder = project.root / "adapters" / name
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "r": rank,
        "lora_alpha": rank,
        "target_modules": ["q_proj"],
        "base_model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507",
        "peft_type": "LORA",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def written(project, *adapters: tuple[str, int], loading="dynamic", args=""):
    """The deployment as `serve --local` reads it back: written, then checked."""
    lines = []
    for name, rank in adapters:
        adapter_folder(project, name, rank)
        lines.append(f"  - {{name: {name}, path: ../adapters/{name}}}")
    text = DYNAMIC.format(loading=loading, adapters="\n".join(lines) or "  []", args=args)
    file = project.deployment("d", text)
    checked = check_paths([file])
    assert checked.deployments, [str(d) for d in checked.diagnostics]
    return checked.deployments[0]


def test_a_new_adapter_is_staged_without_a_restart(project):
    serving = written(project, ("alpha", 8))
    change = adapter_change(serving, written(project, ("alpha", 8), ("beta", 8)))
    assert change.restart is None
    assert [a.name for a in change.added] == ["beta"] and change.updated == ()


def test_an_adapter_from_another_folder_is_an_update(project):
    serving = written(project, ("alpha", 8))
    adapter_folder(project, "alpha-v2")
    text = project.deployments.joinpath("d.yaml").read_text()
    project.deployment("d", text.replace("../adapters/alpha}", "../adapters/alpha-v2}"))
    change = adapter_change(serving, check_paths([project.deployments / "d.yaml"]).deployments[0])
    assert change.restart is None and [a.name for a in change.updated] == ["alpha"]


def test_no_change_to_what_serves_stages_nothing(project):
    serving = written(project, ("alpha", 8))
    change = adapter_change(serving, written(project, ("alpha", 8)))
    assert change == type(change)()


@pytest.mark.parametrize(
    ("serving", "now", "reason"),
    [
        (
            dict(adapters=[("alpha", 8), ("beta", 8)]),
            dict(adapters=[("alpha", 8)]),
            "adapter beta was removed",
        ),
        (
            dict(adapters=[("alpha", 8)]),
            dict(adapters=[("alpha", 8), ("beta", 8)], args=", max-num-seqs: 8"),
            "vllm changed",
        ),
        (
            dict(adapters=[("alpha", 8)]),
            dict(adapters=[("alpha", 8), ("wide", 64)]),
            "max-lora-rank",
        ),
        (
            dict(adapters=[("alpha", 8)], loading="static"),
            dict(adapters=[("alpha", 8), ("beta", 8)], loading="static"),
            "adapter_loading is not dynamic",
        ),
    ],
)
def test_a_change_vllm_reads_only_at_start_needs_a_restart(project, serving, now, reason):
    before = written(
        project, *serving["adapters"], loading=serving.get("loading", "dynamic"), args=""
    )
    after = written(
        project,
        *now["adapters"],
        loading=now.get("loading", "dynamic"),
        args=now.get("args", ""),
    )
    change = adapter_change(before, after)
    assert change.restart is not None and reason in change.restart


def test_the_watch_sees_content_not_saves(tmp_path):
    file = tmp_path / "d.yaml"
    file.write_text("a: 1\n")
    watch = FileWatch([file])
    assert not watch.changed()
    file.write_text("a: 1\n")  # saved again, same bytes
    assert not watch.changed()
    file.write_text("a: 2\n")
    assert watch.changed() and not watch.changed()
    file.unlink()
    assert watch.changed()
