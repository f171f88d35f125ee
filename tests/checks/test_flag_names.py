"""A flag written with vLLM's Python name (underscores) is pointed at its dashed CLI name."""

from __future__ import annotations

from deployer.checks.flags import _suggest
from deployer.checks.pipeline import check_paths
from deployer.vllm import catalog

from ..conftest import MINIMAL


def test_an_underscore_flag_name_suggests_the_dashed_name(project):
    with_args = MINIMAL.replace(
        '"0.11.2"\n', '"0.11.2"\n  args:\n    enable_prefix_caching: true\n'
    )
    project.deployment("app", with_args)
    (error,) = check_paths([project.deployments]).diagnostics
    assert error.is_error and error.path == ("vllm", "args", "enable_prefix_caching")
    assert error.hint.startswith("did you mean 'enable-prefix-caching'?")


def test_the_catalog_check_suggests_the_dashed_name_of_a_known_flag():
    flags = catalog.load("0.32.0")
    assert _suggest("enable_prefix_caching", flags).startswith(
        "did you mean 'enable-prefix-caching'?"
    )
    assert _suggest("max-model-lenn", flags) == "did you mean 'max-model-len'?"
