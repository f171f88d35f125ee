"""The benchmark script keeps working, and deployments that share image settings share an image."""

from __future__ import annotations

import re
import subprocess
import sys

from deployer.checks.pipeline import check_paths
from deployer.render.app import render

from .conftest import MINIMAL, REPO


def test_benchmark_prints_its_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--sizes", "3", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    labels = [
        line.split("  ")[0] for line in out.stdout.splitlines() if line and not line.startswith("#")
    ]
    assert labels[:3] == ["command", "modal --help", "deployer --help"]
    assert (
        "deployer validate --schema-only" in labels and "deployer render (validates too)" in labels
    )
    assert re.search(r"deployer --help\s+-\s+\d+\.\d+ s \(", out.stdout)


def image_block(source: str) -> str:
    start = source.index("vllm_image = (")
    return source[start : source.index("\n)\n", start) + 3]


def test_deployments_with_the_same_image_settings_render_identical_images(project):
    project.deployment("a", MINIMAL + "adapters: [{name: x, repo: org/x}]\n")
    project.deployment(
        "b",
        MINIMAL.replace("gpu: A10G", "gpu: H100")
        + "adapters: [{name: y, repo: org/y}, {name: z, repo: org/z}]\n",
    )
    project.deployment("c", MINIMAL + "image: {env: {VLLM_LOGGING_LEVEL: DEBUG}}\n")
    apps = {
        d.name: render(d, project.root / "build").source
        for d in check_paths([project.deployments]).deployments
    }
    assert image_block(apps["a"]) == image_block(apps["b"])  # one image build, cached by Modal
    assert image_block(apps["a"]) != image_block(apps["c"])
    # Nothing deployment-specific is baked in: names, adapters and local folders come later.
    assert "adapter" not in image_block(apps["b"]) and "add_local_dir" not in image_block(apps["b"])
