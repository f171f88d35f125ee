"""Secrets by reference only: sentinel values in the environment never show up in anything the
deployer writes or prints (rendered apps, plans, apply results, JSON, job summaries, errors),
nor in what it hands Modal (argv and deployed files, as the fake Modal records them)."""

from __future__ import annotations

from ..conftest import MINIMAL, git_commit

SENTINELS = {
    "VLLM_API_KEY": "sk-SENTINEL-api-key-4c1f",
    "MODAL_TOKEN_SECRET": "as-SENTINEL-modal-secret-77aa",
    "MODAL_PROXY_SECRET": "wk-SENTINEL-proxy-secret-9d0e",
    "MODAL_PROXY_KEY": "wk-SENTINEL-proxy-key-1b2c",
    "HF_TOKEN": "hf_SENTINELhubtoken5e6f",
}
PROXY = (
    MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}\n", "auth:\n  proxy: true\n")
    + "scaling:\n  startup_timeout: 3\n"
)


def test_no_output_or_file_contains_a_secret_value(
    project, modal_world, cli, monkeypatch, tmp_path
):
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.deployment("keyed", MINIMAL + "secrets: [hf-token]\nscaling:\n  startup_timeout: 3\n")
    project.deployment("proxied", PROXY)
    git_commit(project.root, "two deployments")

    outputs = []
    for args in (
        ["validate"],
        ["validate", "--format", "json"],
        ["validate", "--format", "github"],
        ["render"],
        ["render", "--format", "json"],
        ["plan"],
        ["plan", "--format", "json"],
        ["plan", "--format", "github"],
        ["apply", "--yes", "--format", "github"],
        ["status"],
        ["status", "--format", "json"],
        ["endpoints"],
        ["endpoints", "--format", "json"],
        ["smoke", "keyed", "--url", f"{modal_world.server.url}/keyed", "--format", "json"],
        ["smoke", "proxied", "--url", f"{modal_world.server.url}/proxied"],
        ["rollback", "keyed"],
    ):
        code, out, err = cli(*args)
        outputs.append((args, out + err))
    modal_world.fake.next_deploy_behaves("keyed", "chat-error")  # an error path, with its messages
    project.deployment(
        "keyed",
        MINIMAL.replace("A10G", "L4") + "secrets: [hf-token]\nscaling:\n  startup_timeout: 3\n",
    )
    outputs.append((["apply (failing)"], "".join(cli("apply", "--yes", "--format", "json")[1:])))

    written = {
        p: p.read_text(errors="replace") for p in (project.root / "build").rglob("*") if p.is_file()
    }
    written[summary] = summary.read_text()
    written[modal_world.fake.path] = modal_world.fake.path.read_text()  # what Modal was handed
    assert any(
        "deployer apply" not in text and "keyed" in text for _, text in outputs
    )  # the commands ran
    for value in SENTINELS.values():
        for args, text in outputs:
            assert value not in text, f"{value} printed by deployer {' '.join(args)}"
        for path, text in written.items():
            assert value not in text, f"{value} written to {path}"
