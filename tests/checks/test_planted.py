"""The shipped examples, with the Hub's files for their models in a local cache: validate says
nothing false about them as shipped, and explains, at the right line, every problem planted in a
copy."""

from __future__ import annotations

import json

import pytest

from deployer.checks.pipeline import check_paths

from ..conftest import FIXTURES, REPO

QWEN3_4B = (FIXTURES / "configs" / "Qwen--Qwen3-4B-Instruct-2507.json").read_text()
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapter_config(rank: int, base: str = "Qwen/Qwen3-4B-Instruct-2507", **extra) -> str:
    return json.dumps(
        {
            "peft_type": "LORA",
            "r": rank,
            "lora_alpha": 2 * rank,
            "target_modules": TARGETS,
            "base_model_name_or_path": base,
            "bias": "none",
            **extra,
        }
    )


@pytest.fixture
def shipped(project, hub_cache):
    hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": QWEN3_4B})
    hub_cache("pilipolio/chess-puzzle-sft-qwen3-4b", {"adapter_config.json": adapter_config(16)})
    hub_cache("example-org/qwen3-4b-sql-lora", {"adapter_config.json": adapter_config(8)})
    for path in (REPO / "deployments").glob("*.yaml"):
        project.write(f"deployments/{path.name}", path.read_text())
    return project


def plant(project, file: str, old: str, new: str) -> int:
    """Replace `old` by `new` in a deployment; returns the 1-based line where `new` starts."""
    path = project.deployments / file
    text = path.read_text()
    assert old in text, old
    text = text.replace(old, new, 1)
    path.write_text(text)
    return text[: text.index(new)].count("\n") + 1


def findings(project):
    checked = check_paths([project.deployments])
    return {(d.file.split("/")[-1], d.line, d.rule): d for d in checked.diagnostics}, checked


def test_shipped_examples_say_nothing_false_when_their_files_are_at_hand(shipped):
    found, checked = findings(shipped)
    assert list(found) == [("chess-puzzle.yaml", 25, "auth.public")]
    assert checked.notes == ()  # every check ran
    # The public endpoint is accepted in the YAML, so `validate --strict` passes on them.
    assert found[("chess-puzzle.yaml", 25, "auth.public")].is_accepted


def test_every_planted_problem_is_explained_at_its_line(shipped, hub_cache):
    hub_cache(
        "example-org/qwen3-4b-sql-lora", {"adapter_config.json": adapter_config(8, use_dora=True)}
    )
    hub_cache(
        "pilipolio/chess-puzzle-sft-qwen3-4b",
        {"adapter_config.json": adapter_config(64, modules_to_save=["lm_head"])},
    )
    typo = plant(
        shipped, "qwen3-4b-multi.yaml", "    max-model-len: 16384", "    max-model-lenn: 16384"
    )
    newer = plant(
        shipped,
        "qwen3-4b-multi.yaml",
        "    max-loras: 3 ",
        "    lora-target-modules: [q_proj]\n    max-loras: 3 ",
    )
    rank = (
        plant(shipped, "qwen3-4b-multi.yaml", "  args:\n", "  args:\n    max-lora-rank: 24\n") + 1
    )
    plant(shipped, "chess-puzzle.yaml", "    max-model-len: 65536", "    max-num-seqs: 8")
    sql = plant(shipped, "qwen3-4b-multi.yaml", "  - name: sql", "  - name: sql")
    chess = plant(
        shipped, "qwen3-4b-multi.yaml", "  - name: chess-puzzle\n", "  - name: chess-puzzle\n"
    )
    l40s = plant(shipped, "qwen3-4b-multi.yaml", "gpu: L40S", "gpu: L40S")
    found, _ = findings(shipped)
    expected = {
        ("qwen3-4b-multi.yaml", typo + 2, "flags.unknown"),  # two lines were planted above it
        ("qwen3-4b-multi.yaml", newer + 1, "flags.not-in-version"),
        ("qwen3-4b-multi.yaml", rank, "flags.value"),
        ("qwen3-4b-multi.yaml", rank, "lora.rank-too-small"),
        ("qwen3-4b-multi.yaml", sql, "compat.dora"),
        ("qwen3-4b-multi.yaml", chess, "compat.modules-to-save"),
        (
            "qwen3-4b-multi.yaml",
            chess + 2,
            "compat.modules-to-save",
        ),  # chess-puzzle-pinned: same repo
        ("qwen3-4b-multi.yaml", l40s, "fit.kv-cache"),  # without max-model-len, the full context
        ("chess-puzzle.yaml", 9, "compat.modules-to-save"),  # the same adapter serves here too
        ("chess-puzzle.yaml", 12, "fit.kv-cache"),
        ("chess-puzzle.yaml", 25, "auth.public"),
    }
    assert set(found) == expected, sorted(found)
    assert (
        "did you mean 'max-model-len'?"
        == found[("qwen3-4b-multi.yaml", typo + 2, "flags.unknown")].hint
    )
    assert (
        "exists in 0.32.0"
        in found[("qwen3-4b-multi.yaml", newer + 1, "flags.not-in-version")].message
    )
    assert (
        "rank of adapter 'chess-puzzle' (64)"
        in found[("qwen3-4b-multi.yaml", rank, "lora.rank-too-small")].message
    )
    # The rank-64 adapter's LoRA buffers take their share of the A10G too.
    assert "at most 79,872" in found[("chess-puzzle.yaml", 12, "fit.kv-cache")].hint
