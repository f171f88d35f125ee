"""Scaling numbers against each other, with the default bound on containers."""

from __future__ import annotations

from deployer.checks.pipeline import check_paths

from ..conftest import MINIMAL


def scaling_findings(project, scaling: str) -> list:
    project.deployment("a", MINIMAL + "scaling:\n" + scaling)
    return [d for d in check_paths([project.deployments]).diagnostics if d.rule == "scaling.bounds"]


def test_warm_containers_above_the_default_bound_say_it_is_the_default(project):
    (error,) = scaling_findings(project, "  min_containers: 5\n")
    assert error.is_error and error.path == ("scaling", "min_containers")
    assert error.message == "min_containers 5 is above the default max_containers 4"
    assert "null: no bound" in error.hint


def test_warm_containers_above_a_written_bound_quote_it(project):
    (error,) = scaling_findings(project, "  min_containers: 3\n  max_containers: 2\n")
    assert error.message == "min_containers 3 is above max_containers 2"


def test_no_bound_allows_any_number_of_warm_containers(project):
    assert scaling_findings(project, "  min_containers: 5\n  max_containers: null\n") == []
