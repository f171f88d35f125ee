"""One half-written deployment does not stop render, fit or serve of another; it still stops
everything that acts on all of them."""

from __future__ import annotations

from ..conftest import MINIMAL

BROKEN = MINIMAL.replace("A10G", "Z80")


def test_render_of_a_named_deployment_goes_ahead_and_names_the_broken_file(project, cli):
    project.deployment("a")
    project.deployment("b", BROKEN)
    code, out, err = cli("render", "a")
    assert code == 0 and out.split()[:2] == ["written", "build/a/app.py"]
    assert err.splitlines()[0] == (
        "deployer render: going ahead with a; not with deployments/b.yaml, which has errors "
        "(`deployer validate` shows them)"
    )
    assert "deployments/b.yaml" not in "\n".join([out, *err.splitlines()[1:]])
    assert not (project.root / "build" / "b").exists()


def test_render_of_the_broken_deployment_or_of_all_still_refuses(project, cli):
    project.deployment("a")
    project.deployment("b", BROKEN)
    for names in (["b"], [], ["a", "b"]):
        code, _, err = cli("render", *names)
        assert code == 1 and "nothing rendered" in err, names
    assert not (project.root / "build").exists()


def test_fit_of_a_named_deployment_goes_ahead(project, cli):
    project.deployment("a")
    project.deployment("b", BROKEN)
    _, out, err = cli("fit", "a")
    # Offline the model cannot be sized, but the command gets that far: it prints the price.
    assert "not with deployments/b.yaml" in err and "cost per warm hour" in out
    code, _, err = cli("fit")
    assert code == 1 and "nothing done" in err


def test_serve_of_a_named_deployment_gets_past_the_checks(project, cli, monkeypatch):
    import deployer.cli.local as local

    project.deployment("a")
    project.deployment("b", BROKEN)
    picked = []

    def stop(deployment, *args, **kwargs):
        picked.append(deployment.name)
        raise SystemExit(0)

    monkeypatch.setattr(local, "render", stop, raising=False)
    monkeypatch.setattr("deployer.render.app.render", stop)
    code, _, err = cli("serve", "a", "--local")
    assert picked == ["a"] and "not with deployments/b.yaml" in err
    assert cli("serve", "b", "--local")[0] == 1


def test_strict_warnings_in_another_file_do_not_stop_a_named_render(project, cli):
    project.deployment("a")
    project.deployment(
        "b", MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}", "auth: none")
    )
    assert cli("render", "--strict", "a")[0] == 0
    assert cli("render", "--strict")[0] == 1
