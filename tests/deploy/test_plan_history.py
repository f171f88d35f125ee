"""Only what changed is deployed: a real git history of 20 merges, each applied to the fake Modal.

Ten deployments share a _defaults.yaml and the project's own templates/. After every commit,
`deployer plan --against HEAD~1` (offline, from git alone) and `deployer apply --yes --prune`
(against the fake Modal, tests/fake_modal.py) must both name exactly the deployments whose
running code changed: nothing for comments, key order, smoke settings or files the apps do not
read; everything for a template code change; the right subset for a defaults change.
"""

from __future__ import annotations

import json
import shutil

from ..conftest import REPO, git_commit

ADAPTER_CONFIG = json.dumps(
    {
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507",
    }
)


def deployment(gpu: str = "A10G", extra: str = "") -> str:
    return f"""\
base_model:
  repo: Qwen/Qwen3-4B-Instruct-2507
gpu: {gpu}
vllm:
  version: "0.11.2"
  args:
    max-model-len: 8192
auth:
  api_key: {{secret: serving-key}}
{extra}"""


NAMES = [f"d{i:02}" for i in range(10)]


def test_each_merge_deploys_exactly_what_changed(project, modal_world, cli):
    root, fake = project.root, modal_world.fake
    shutil.copytree(REPO / "templates", root / "templates")
    project.write(
        "deployments/_defaults.yaml", "scaling:\n  scaledown_window: 300\n  startup_timeout: 5\n"
    )
    for name in NAMES:
        project.deployment(name, deployment())
    project.deployment("d09", deployment(extra="scaling:\n  scaledown_window: 120\n"))
    for adapter in ("sql", "chat"):
        project.write(f"adapters/{adapter}/adapter_config.json", ADAPTER_CONFIG)
        project.write(f"adapters/{adapter}/adapter_model.safetensors", f"weights of {adapter} v1")
    project.deployment(
        "d08", deployment(extra="adapters:\n  - name: chat\n    path: ../adapters/chat\n")
    )
    project.write("README.md", "# serving\n")

    def edit(relative: str, old: str, new: str) -> None:
        path = root / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new, 1))

    steps = [
        ("ten deployments", lambda: None, set(NAMES)),
        (
            "a comment in d03",
            lambda: edit("deployments/d03.yaml", "gpu: A10G", "gpu: A10G  # cheapest that fits"),
            set(),
        ),
        (
            "d04's keys reordered",
            lambda: project.deployment(
                "d04", "gpu: A10G\n" + deployment().replace("gpu: A10G\n", "")
            ),
            set(),
        ),
        (
            "an adapter added to d05",
            lambda: edit(
                "deployments/d05.yaml",
                "auth:",
                "adapters:\n  - name: sql\n    path: ../adapters/sql\nauth:",
            ),
            {"d05"},
        ),
        (
            "a flag changed in d06",
            lambda: edit("deployments/d06.yaml", "max-model-len: 8192", "max-model-len: 16384"),
            {"d06"},
        ),
        (
            "a longer scaledown in _defaults.yaml",
            lambda: edit(
                "deployments/_defaults.yaml", "scaledown_window: 300", "scaledown_window: 600"
            ),
            set(NAMES) - {"d09"},
        ),
        (
            "a template comment reworded",
            lambda: edit(
                "templates/modal_app.py.j2",
                "# ## Model and adapters",
                "# ## The model and its adapters",
            ),
            set(),
        ),
        (
            "a template code change",
            lambda: edit(
                "templates/modal_app.py.j2",
                "    hf_cache_vol.commit()\n",
                "    hf_cache_vol.commit()\n    print('weights committed')\n",
            ),
            set(NAMES),
        ),
        ("d07 deleted", lambda: (root / "deployments/d07.yaml").unlink(), set()),
        (
            "sql adapter retrained",
            lambda: project.write("adapters/sql/adapter_model.safetensors", "weights of sql v2"),
            {"d05"},
        ),
        (
            "README edited",
            lambda: project.write("README.md", "# serving\n\nOur endpoints.\n"),
            set(),
        ),
        ("d01 on an L4", lambda: edit("deployments/d01.yaml", "gpu: A10G", "gpu: L4"), {"d01"}),
        ("d10 added", lambda: project.deployment("d10", deployment("L40S")), {"d10"}),
        (
            "d02 served under another name",
            lambda: edit(
                "deployments/d02.yaml",
                "  repo: Qwen/Qwen3-4B-Instruct-2507",
                "  repo: Qwen/Qwen3-4B-Instruct-2507\n  served_name: qwen3-4b",
            ),
            {"d02"},
        ),
        (
            "d09's own scaledown changed",
            lambda: edit("deployments/d09.yaml", "scaledown_window: 120", "scaledown_window: 60"),
            {"d09"},
        ),
        (
            "d03's smoke prompt changed",
            lambda: edit("deployments/d03.yaml", "auth:", "smoke:\n  prompt: Say hi\nauth:"),
            set(),
        ),
        (
            "d04 on vLLM 0.32.0",
            lambda: edit("deployments/d04.yaml", '"0.11.2"', '"0.32.0"'),
            {"d04"},
        ),
        (
            "d01 back on an A10G",
            lambda: edit("deployments/d01.yaml", "gpu: L4", "gpu: A10G"),
            {"d01"},
        ),
        (
            "d00 flag and d06 comment",
            lambda: (
                edit("deployments/d00.yaml", "max-model-len: 8192", "max-model-len: 4096"),
                edit("deployments/d06.yaml", "auth:", "# d06 serves the eval team\nauth:"),
            ),
            {"d00"},
        ),
        ("d07 restored", lambda: project.deployment("d07", deployment()), {"d07"}),
    ]
    orphans_stopped = []
    for number, (message, change, expected) in enumerate(steps, 1):
        change()
        git_commit(root, message)
        if number > 1:
            code, out, err = cli("plan", "--against", "HEAD~1", "--format", "json")
            assert code == 0, err
            predicted = {
                a["name"] for a in json.loads(out)["actions"] if a["action"] in ("create", "update")
            }
            assert predicted == expected, (
                f"step {number} ({message}): plan --against HEAD~1 predicted {sorted(predicted)}"
            )
        fake.clear_calls()
        code, out, err = cli("apply", "--yes", "--prune")
        assert code == 0, f"step {number} ({message}):\n{out}\n{err}"
        deployed = [name for name, _ in fake.deploys()]
        assert sorted(deployed) == sorted(expected), (
            f"step {number} ({message}): deployed {sorted(deployed)}"
        )
        orphans_stopped += [c["name"] for c in fake.state["calls"] if c["op"] == "stop"]
        code, out, _ = cli("plan", "--detailed-exitcode")
        assert code == 0, f"step {number} ({message}): not converged:\n{out}"
    assert orphans_stopped == ["d07"]
    assert (
        len(steps) == 20 and len(fake.history("d05")) == 5
    )  # create, defaults, template, retrain... each one version
