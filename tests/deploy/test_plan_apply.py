"""plan / apply / status / rollback / endpoints against the fake Modal (tests/fake_modal.py).

Modal's servers cannot be reached from the test machines, so every test here runs the real CLI
and the real `deployer.deploy.platform.modal_cli` code, which runs a fake `modal` executable; the fake
keeps Modal's state (apps, numbered versions, tags, recorded commits) and serves each app's
endpoint on loopback like vLLM's OpenAI server would.
"""

from __future__ import annotations

import json
import os
import re
import threading

from deployer.deploy.apply import LockError, apply_lock
from deployer.local.smoke import CheckResult

from ..conftest import FAST, MINIMAL, git_commit, two, with_local_adapter


def test_plan_against_an_empty_workspace_creates_everything(project, modal_world, cli):
    two(project)
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2
    assert "+ create    alpha" in out and "+ create    beta" in out
    assert "Plan: 2 to create; 0 unchanged (compared with Modal (default environment))." in out
    assert modal_world.fake.deploys() == []  # plan changes nothing


def test_apply_deploys_with_the_content_tag_then_plan_has_nothing_to_do(project, modal_world, cli):
    commit = two(project)
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    deploys = dict(modal_world.fake.deploys())
    assert set(deploys) == {"alpha", "beta"}
    assert all(tag.startswith("deployer-") and len(tag) <= 50 for tag in deploys.values())
    assert modal_world.fake.history("alpha")[0].commit == commit[:7]
    assert "2 of 2 succeeded" in out
    deploy_argv = [a for a in modal_world.argv() if a[0] == "deploy"]
    assert sorted(a[a.index("--name") + 1] for a in deploy_argv) == ["alpha", "beta"]
    assert all(
        a[1].endswith("/app.py") and a[a.index("--tag") + 1] == deploys[a[a.index("--name") + 1]]
        for a in deploy_argv
    )

    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 0 and "Plan: no changes; 2 unchanged" in out


def test_comment_and_key_order_edits_plan_no_change(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    project.deployment(
        "alpha",
        "# a comment about alpha\n" + FAST.replace("gpu: A10G", "gpu: A10G   # the cheap one"),
    )
    reordered = FAST.replace("gpu: A10G\n", "").replace("base_model:", "gpu: L4\nbase_model:")
    project.deployment("beta", reordered)
    git_commit(project.root, "comments and order")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 0, out


def test_update_summary_names_what_changed_from_the_deployed_commit(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    project.deployment(
        "alpha",
        FAST.replace(
            'version: "0.11.2"', 'version: "0.11.2"\n  args: {max-model-len: 8192}'
        ).replace("gpu: A10G", "gpu: L40S"),
    )
    git_commit(project.root, "bigger alpha")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2
    assert "~ update    alpha  (v1 " in out
    assert "      gpu: A10G → L40S" in out
    assert "      vllm flag --max-model-len added: 8192" in out
    assert "means: new containers: cold start (up to 3 s)" in out
    assert "= unchanged beta" in out

    code, out, _ = cli("plan", "--format", "json")
    (alpha,) = [a for a in json.loads(out)["actions"] if a["name"] == "alpha"]
    assert (
        alpha["action"] == "update"
        and {"what": "gpu", "before": "A10G", "after": "L40S"} in alpha["changes"]
    )


def test_github_format_writes_the_plan_to_the_job_summary(
    project, modal_world, cli, tmp_path, monkeypatch
):
    two(project)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert cli("plan", "--format", "github")[0] == 0
    text = summary.read_text()
    assert text.startswith("## Deployment plan") and "| + | `alpha` | **create** |" in text


def test_a_plan_of_many_changes_stays_readable_and_within_githubs_summary_limit(
    project, modal_world, cli, tmp_path, monkeypatch
):
    # 200 changed variables in each of 1,850 deployments wrote 321 MB to the job summary (GitHub
    # takes 1 MiB) and 100 MB to the log.
    import deployer.cli.plan_apply

    env = lambda value: "image:\n  env:\n" + "".join(f"    V{i}: '{value}'\n" for i in range(100))
    for name in ("alpha", "beta"):
        project.deployment(name, FAST + env("a"))
    git_commit(project.root, "many variables")
    for name in ("alpha", "beta"):
        project.deployment(name, FAST + env("<" * 100))
    git_commit(project.root, "all changed")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setattr(deployer.cli.plan_apply, "MAX_SUMMARY_CHARS", 10_000)
    code, out, _ = cli("plan", "--against", "HEAD~1", "--format", "github")
    alpha = out.split("update    alpha")[1].split("update    beta")[0]
    assert alpha.count("image env V") == 29 and "and 71 more settings" in alpha
    text = summary.read_text()
    assert (
        len(text) < 10_100
        and text.rstrip().endswith("is in the job's log._")
        and text.startswith("## Deployment plan")
    )


def test_a_deploy_whose_smoke_check_fails_is_rolled_back_and_retried_next_time(
    project, modal_world, cli
):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    good_tag = modal_world.fake.history("alpha")[0].tag
    project.deployment("alpha", FAST.replace("gpu: A10G", "gpu: L40S"))
    git_commit(project.root, "alpha on L40S")
    modal_world.fake.next_deploy_behaves("alpha", "chat-error")

    code, out, err = cli("apply", "--yes")
    assert code == 1
    assert "ROLLED BACK" in out and "smoke check failed" in out and "rolled back to v1" in out
    history = modal_world.fake.history("alpha")
    assert [v.number for v in history] == [3, 2, 1] and history[0].tag == good_tag  # v3 = v1 again
    assert "1 of 2 succeeded" in out and "1 failed: alpha" in out

    code, out, _ = cli("plan", "--detailed-exitcode")  # the failed change is still pending
    assert code == 2 and "~ update    alpha" in out
    assert cli("apply", "--yes")[0] == 0
    assert modal_world.fake.history("alpha")[0].number == 4


def test_smoke_checks_that_a_route_outside_v1_refuses_a_request_without_the_key(
    project, modal_world, cli
):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    code, out, _ = cli(
        "smoke", "alpha", "--url", f"{modal_world.server.url}/alpha", "--format", "json"
    )
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 0 and checks["credentials required"]["ok"]
    assert checks["credentials required"]["detail"] == "POST /tokenize without credentials → 401"


def test_a_first_deploy_that_asks_for_its_key_on_v1_only_is_stopped(project, modal_world, cli):
    two(project)
    modal_world.fake.next_deploy_behaves("alpha", "v1-only-auth")
    code, out, _ = cli("apply", "--yes")
    assert code == 1
    assert (
        "credentials required: POST /tokenize without credentials → 200, not 401: the "
        "endpoint answers anyone with its URL" in out
    )
    assert modal_world.fake.state["apps"]["alpha"]["state"] == "stopped"
    assert modal_world.fake.state["apps"]["beta"]["state"] == "deployed"


def test_a_secret_without_the_key_fails_the_deploy_at_start(project, modal_world, cli):
    two(project)
    modal_world.fake.create_secret("test-api-key", {"HF_TOKEN": "x"})
    code, out, _ = cli("apply", "--yes")
    assert code == 1 and "not healthy after 3 s" in out


def test_a_first_deploy_whose_endpoint_never_becomes_healthy_is_stopped(project, modal_world, cli):
    two(project)
    modal_world.fake.next_deploy_behaves("beta", "unhealthy")
    code, out, err = cli("apply", "--yes")
    assert code == 1
    assert "not healthy after 3 s" in out and "first deploy, so the app was stopped" in out
    assert modal_world.fake.state["apps"]["beta"]["state"] == "stopped"
    assert modal_world.fake.state["apps"]["alpha"]["state"] == "deployed"
    assert "waiting for" in err or "beta: deployed v1" in err  # progress went to stderr


def test_a_version_whose_vllm_cannot_start_is_rolled_back_quoting_vllms_error(
    project, modal_world, cli
):
    from ..fake_modal import START_FAILURE

    two(project)
    assert cli("apply", "--yes")[0] == 0
    project.deployment("alpha", FAST.replace("gpu: A10G", "gpu: L40S"))
    git_commit(project.root, "alpha on L40S")
    modal_world.fake.next_deploy_behaves("alpha", "start-fails")

    code, out, err = cli("apply", "--yes")
    assert code == 1
    (row,) = [line for line in out.splitlines() if line.startswith("alpha ")]
    assert "ROLLED BACK" in row and "not healthy after 3 s" in row and "rolled back to v1" in row
    quoted = out.split("alpha: the app's logs, last lines:\n", 1)[1].split("\n\n", 1)[0]
    assert f"  {START_FAILURE}" in quoted.splitlines()  # vLLM's own words, under the table
    assert "  Loading safetensors checkpoint shards: 100% Completed | 1/1" in quoted.splitlines()
    ops = [c["op"] for c in modal_world.fake.state["calls"]]
    assert ops.index("logs") < ops.index("rollback")  # read while the failed version was current
    history = modal_world.fake.history("alpha")
    assert [v.number for v in history] == [3, 2, 1] and history[0].tag == history[2].tag


def test_the_logs_of_a_failed_start_are_in_the_json_detail(project, modal_world, cli):
    from ..fake_modal import START_FAILURE

    two(project)
    modal_world.fake.next_deploy_behaves("beta", "start-fails")
    code, out, _ = cli("apply", "--yes", "--format", "json")
    (beta,) = [r for r in json.loads(out)["results"] if r["name"] == "beta"]
    assert code == 1 and beta["result"] == "stopped"
    assert beta["detail"].splitlines()[1:2] == ["the app's logs, last lines:"]
    assert beta["detail"].endswith(f"\n  {START_FAILURE}")


def test_logs_that_cannot_be_read_do_not_hold_up_the_rollback(project, modal_world, cli):
    two(project)
    modal_world.fake.next_deploy_behaves("alpha", "start-fails")
    modal_world.fake.fail_next_logs("Deadline exceeded")
    code, out, _ = cli("apply", "--yes")
    assert code == 1 and "first deploy, so the app was stopped" in out
    assert (
        "alpha: the app's logs could not be read: `modal app logs alpha --tail 20` failed "
        "(exit 1): Deadline exceeded" in out
    )
    assert modal_world.fake.state["apps"]["alpha"]["state"] == "stopped"
    assert modal_world.fake.state["apps"]["beta"]["state"] == "deployed"


def test_a_log_reader_that_breaks_does_not_hold_up_the_rollback(project, modal_world):
    from deployer.checks.pipeline import check_paths
    from deployer.deploy.apply import apply
    from deployer.deploy.desired import desired, project_for
    from deployer.deploy.plan import make_plan
    from deployer.deploy.state import deployed_from_platform

    two(project)
    fake = modal_world.fake
    fake.next_deploy_behaves("alpha", "start-fails")
    checked = check_paths([project.deployments])
    want = desired(checked.deployments, project.root / "build", project_for(project.deployments))
    plan = make_plan(
        want, deployed_from_platform(fake), {}, project_for(project.deployments), "fake"
    )

    def broken(name, lines):
        raise ConnectionResetError("reset by peer\n::error::x")

    fake.recent_logs = broken
    failing = lambda d, url, cancel: [CheckResult("health", False, 3.0, "not healthy after 3 s")]
    outcomes = apply(plan, want, fake, failing, parallel=1)
    assert outcomes[0].result == "stopped" and fake.state["apps"]["alpha"]["state"] == "stopped"
    assert outcomes[0].detail.endswith(
        "\nthe app's logs could not be read: ConnectionResetError: reset by peer\\n::error::x"
    )


def test_a_missing_adapter_fails_the_smoke_check(project, modal_world, cli):
    with_local_adapter(project)
    modal_world.fake.next_deploy_behaves("alpha", "missing-adapter")
    code, out, _ = cli("apply", "--yes")
    assert code == 1 and "sql" in out and "STOPPED" in out


def test_one_failed_deploy_does_not_stop_the_others(project, modal_world, cli):
    two(project)
    modal_world.fake.fail_next_deploy("alpha", "Image build for im-123 failed")
    code, out, _ = cli("apply", "--yes")
    assert code == 1
    assert "deploy failed (nothing was created)" in out and "Image build for im-123 failed" in out
    assert [name for name, _ in modal_world.fake.deploys()] == ["beta"]
    assert cli("apply", "--yes")[0] == 0  # the next run converges
    assert cli("plan", "--detailed-exitcode")[0] == 0


def test_orphans_are_listed_and_stopped_only_with_prune(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    (project.deployments / "beta.yaml").unlink()
    git_commit(project.root, "beta retired")
    other = project.write("other/app.py", 'SERVED_MODEL_NAME = "x"\n')
    modal_world.fake.deploy(other, "someone-elses", "v1.2")  # not ours: never touched

    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "- orphan    beta" in out and "someone-elses" not in out
    code, out, _ = cli("apply", "--yes")
    assert code == 0 and "1 orphan(s) kept: `deployer apply --prune` stops them" in out
    assert modal_world.fake.state["apps"]["beta"]["state"] == "deployed"

    code, out, _ = cli("apply", "--yes", "--prune")
    assert code == 0 and "orphan stopped" in out
    assert modal_world.fake.state["apps"]["beta"]["state"] == "stopped"
    assert modal_world.fake.state["apps"]["someone-elses"]["state"] == "deployed"
    assert ["app", "stop", "beta", "--yes"] in modal_world.argv()


def test_apply_without_yes_and_without_a_terminal_changes_nothing(project, modal_world, cli):
    two(project)
    code, _, err = cli("apply")
    assert code == 2 and "pass --yes" in err
    assert modal_world.fake.deploys() == []


def test_apply_checks_smoke_credentials_before_deploying_anything(
    project, modal_world, cli, monkeypatch
):
    two(project)
    monkeypatch.delenv("VLLM_API_KEY")
    code, _, err = cli("apply", "--yes")
    assert (
        code == 2 and "set VLLM_API_KEY to the VLLM_API_KEY in Modal Secret 'test-api-key'" in err
    )
    assert modal_world.fake.deploys() == []


def test_apply_of_named_deployments_touches_only_those(project, modal_world, cli):
    two(project)
    assert cli("apply", "beta", "--yes")[0] == 0
    assert [n for n, _ in modal_world.fake.deploys()] == ["beta"]
    code, _, err = cli("plan", "gamma")
    assert code == 2 and "no deployment or deployed app named 'gamma'" in err


def test_a_second_apply_on_the_same_checkout_stops_at_once(project, modal_world, cli):
    two(project)
    with apply_lock(project.root / "build"):
        code, _, err = cli("apply", "--yes")
    assert code == 1 and "another `deployer apply` is running here" in err
    assert modal_world.fake.deploys() == []
    with apply_lock(project.root / "build"):  # released: can be taken again
        try:
            with apply_lock(project.root / "build"):
                raise AssertionError("the lock must not be taken twice")
        except LockError:
            pass


def test_apply_interrupted_during_the_smoke_check_rolls_back(project, modal_world):
    """Ctrl-C while waiting for a new version: it must not stay live unverified."""
    from deployer.checks.pipeline import check_paths
    from deployer.deploy.apply import apply
    from deployer.deploy.desired import desired, project_for
    from deployer.deploy.plan import make_plan
    from deployer.deploy.state import deployed_from_platform

    two(project)
    fake = modal_world.fake
    checked = check_paths([project.deployments])
    want = desired(checked.deployments, project.root / "build", project_for(project.deployments))
    plan = make_plan(
        want, deployed_from_platform(fake), {}, project_for(project.deployments), "fake"
    )
    cancel = threading.Event()

    def smoke_then_interrupt(d, url, cancel_event):
        cancel_event.set()
        return []

    outcomes = apply(plan, want, fake, smoke_then_interrupt, parallel=1, cancel=cancel)
    assert [o.result for o in outcomes] == ["stopped", "skipped"]
    assert "interrupted before its smoke check passed" in outcomes[0].detail
    assert fake.state["apps"]["alpha"]["state"] == "stopped" and "beta" not in fake.state["apps"]


def test_status_shows_desired_against_deployed_with_urls_and_cost(project, modal_world, cli):
    two(project)
    assert cli("apply", "alpha", "--yes")[0] == 0
    code, out, _ = cli("status", "--format", "json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["deployments"]}
    assert (
        rows["alpha"]["state"] == "in sync"
        and rows["alpha"]["url"] == f"{modal_world.server.url}/alpha"
    )
    assert rows["beta"]["state"] == "not deployed" and rows["beta"]["url"] is None
    assert rows["alpha"]["gpu"] == "A10G" and rows["alpha"]["usd_per_warm_hour"] > 0
    code, out, _ = cli("status")
    assert "alpha" in out and "in sync" in out and "not deployed" in out


def test_endpoints_give_the_base_url_models_and_a_client_snippet(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    code, out, _ = cli("endpoints", "alpha")
    assert code == 0
    assert f"base URL: {modal_world.server.url}/alpha/v1" in out
    assert (
        f'client = OpenAI(base_url="{modal_world.server.url}/alpha/v1", '
        'api_key=os.environ["VLLM_API_KEY"])' in out
    )
    assert "models:   Qwen/Qwen3-4B-Instruct-2507" in out


def test_rollback_serves_an_earlier_version(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    project.deployment("alpha", FAST.replace("gpu: A10G", "gpu: L4"))
    git_commit(project.root, "alpha on L4")
    assert cli("apply", "--yes")[0] == 0
    first = modal_world.fake.history("alpha")[-1]
    code, out, _ = cli("rollback", "alpha")
    assert code == 0 and "v3 now serves what v1 deployed (was v2)" in out
    assert modal_world.fake.history("alpha")[0].tag == first.tag
    assert ["app", "rollback", "alpha", "v1"] in modal_world.argv()
    assert cli("rollback", "alpha", "v9")[0] == 1
    assert cli("rollback", "alpha", "latest")[0] == 2


def test_plan_without_credentials_compares_with_git_and_says_so(
    project, modal_world, cli, monkeypatch
):
    two(project)
    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(project.root / "no-such.toml"))
    project.deployment("alpha", FAST.replace("gpu: A10G", "gpu: L4"))
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2
    assert (
        "note: no Modal credentials" in out
        and "comparing with what git ref HEAD would deploy instead" in out
    )
    assert "gpu: A10G → L4" in out and "= unchanged beta" in out
    assert modal_world.argv() == []  # Modal was not asked


def test_plan_when_modal_cannot_be_reached_falls_back_to_git(
    project, modal_world, cli, monkeypatch
):
    two(project)
    offline = project.write(
        "offline-bin/modal",
        "#!/bin/sh\necho 'Could not connect to the Modal server.' >&2\nexit 1\n",
    )
    offline.chmod(0o755)
    monkeypatch.setenv("PATH", f"{offline.parent}:{os.environ['PATH']}")
    code, out, _ = cli("plan")
    assert code == 0 and "could not read Modal" in out and "git ref HEAD" in out
    code, _, err = cli("apply", "--yes")  # apply never guesses
    assert code == 1 and "could not read Modal" in err


def test_ctrl_c_during_apply_leaves_old_versions_and_the_next_run_converges(
    project, modal_world, cli
):
    """A real `deployer apply` process, interrupted while a new version is being checked."""
    import signal
    import subprocess
    import sys
    import time

    slow = MINIMAL + "scaling:\n  startup_timeout: 60\n"
    project.deployment("alpha", slow)
    git_commit(project.root, "alpha")
    assert cli("apply", "--yes")[0] == 0
    project.deployment("alpha", slow.replace("gpu: A10G", "gpu: L4"))
    git_commit(project.root, "alpha on L4")
    modal_world.fake.next_deploy_behaves("alpha", "unhealthy")

    # Its own process group, signalled as a whole, as a terminal's Ctrl-C would.
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer", "apply", "--yes"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(modal_world.fake.history("alpha")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # until the new version is live and being waited for
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "interrupted" in err and "ROLLED BACK" in out
    history = modal_world.fake.history("alpha")
    assert history[0].tag == history[2].tag  # v3 serves what v1 served: the old version
    modal_world.fake.next_deploy_behaves("alpha", "ok")
    assert cli("apply", "--yes")[0] == 0  # the next run deploys the change
    assert cli("plan", "--detailed-exitcode")[0] == 0


# -- found in review: each a way plan or apply went wrong ------------------------------------------


def test_an_app_of_another_project_is_a_conflict_and_is_left_alone(project, modal_world, cli):
    two(project)
    other = project.write("other/app.py", 'SERVED_MODEL_NAME = "x"\n')
    modal_world.fake.deploy(other, "alpha", "deployer-0badc0de-" + "1" * 30)
    code, out, err = cli("plan")
    assert code == 1 and "! conflict  alpha" in out and "rename this deployment" in out
    code, out, _ = cli("apply", "--yes")
    assert code == 1 and "deployed by another project" in out
    assert modal_world.fake.history("alpha")[0].tag == "deployer-0badc0de-" + "1" * 30
    assert modal_world.fake.state["apps"]["beta"]["state"] == "deployed"  # the rest went ahead
    code, _, err = cli("rollback", "alpha")
    assert code == 1 and "another project's" in err


def test_a_url_that_cannot_be_read_after_a_deploy_rolls_it_back(
    project, modal_world, cli, monkeypatch
):
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.platform.modal_cli import ModalCli

    two(project)
    monkeypatch.setattr(
        ModalCli, "deploy", lambda self, f, n, t: modal_world.fake.deploy(f, n, t) and None
    )

    def unreachable(self, name):
        raise PlatformError("cannot read the URL: Modal did not answer within 20 s")

    monkeypatch.setattr(ModalCli, "web_url", unreachable)
    code, out, _ = cli("apply", "--yes")
    assert (
        code == 1
        and "deployed, but its URL could not be read" in out
        and "first deploy, so the app was stopped" in out
    )
    assert "deploy failed" not in out
    assert {a["state"] for a in modal_world.fake.state["apps"].values()} == {"stopped"}


def test_deploy_output_that_is_not_utf8_is_read(project, modal_world, cli, monkeypatch):
    two(project)
    wrapper = project.write(
        "wrap/modal",
        "#!/bin/sh\nif [ \"$1\" = deploy ]; then printf 'build log \\377\\376\\n'; "
        f'fi\nexec {modal_world.bin_dir / "modal"} "$@"\n',
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err


def test_apply_json_is_json_and_its_plan_goes_to_stderr(project, modal_world, cli):
    two(project)
    code, out, err = cli("apply", "--yes", "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is True and "+ create    alpha" in err
    code, out, _ = cli("apply", "--yes", "--format", "json")  # nothing to do: still JSON
    assert code == 0 and {r["result"] for r in json.loads(out)["results"]} == {"unchanged"}


def test_bad_arguments_are_usage_errors(project, modal_world, cli, monkeypatch):
    two(project)
    project.write("a-file", "x")
    assert cli("apply", "--yes", "--out", "a-file")[0] == 2
    assert cli("apply", "--yes", "--parallel", "0")[0] == 2
    (project.root / ".git").rename(project.root / "not-git")  # outside git, names are still checked
    code, _, err = cli("plan", "nosuch")
    assert code == 2 and "no deployment or deployed app named 'nosuch'" in err


def test_prune_with_an_empty_deployments_folder_is_refused(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    (project.root / "empty").mkdir()
    code, _, err = cli("apply", "--yes", "--prune", "--deployments", "empty")
    assert code == 2 and "every app of this project (2) would be stopped" in err
    assert {a["state"] for a in modal_world.fake.state["apps"].values()} == {"deployed"}


def test_replace_redeploys_an_unchanged_deployment_with_the_same_tag(project, modal_world, cli):
    two(project)
    assert cli("apply", "--yes")[0] == 0
    tag = dict(modal_world.fake.deploys())["alpha"]
    code, out, _ = cli("plan", "--replace", "alpha", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out and "= unchanged beta" in out
    assert "redeployed on request (--replace)" in out and "new containers: cold start" in out
    code, out, err = cli("apply", "--yes", "--replace", "alpha")
    assert code == 0, out + err
    assert [v.number for v in modal_world.fake.history("alpha")] == [
        2,
        1,
    ] and modal_world.fake.history("alpha")[0].tag == tag
    assert [v.number for v in modal_world.fake.history("beta")] == [1]
    assert "Plan: no changes; 2 unchanged" in cli("plan")[1]


def test_replace_of_an_unknown_or_unselected_deployment_is_a_usage_error(project, modal_world, cli):
    two(project)
    code, _, err = cli("plan", "--replace", "alpah")
    assert code == 2 and "no deployment named 'alpah' (did you mean 'alpha'?)" in err
    code, _, err = cli("apply", "beta", "--replace", "alpha", "--yes")
    assert (
        code == 2 and "--replace alpha: not among the deployments named (beta); name it too" in err
    )
    assert modal_world.fake.deploys() == []


def test_plan_prints_yaml_strings_on_one_line_without_control_characters(project, modal_world, cli):
    # A chat template may well hold line breaks; image.env values may not (an error of their own).
    with_template = lambda text: FAST.replace(
        'version: "0.11.2"', f'version: "0.11.2"\n  args: {{chat-template: "{text}"}}'
    )
    project.deployment("alpha", with_template("{{ x }}"))
    git_commit(project.root, "alpha")
    project.deployment(
        "alpha", with_template("{{ y }}\\n::error file=README.md,line=1::injected\\n\\u001b[2J")
    )
    code, out, _ = cli("plan", "--against", "HEAD", "--format", "github")
    assert code == 0, out
    assert not any(line.startswith("::error") for line in out.splitlines()) and "\x1b" not in out
    assert (
        "vllm flag --chat-template: {{ x }} → {{ y }}\\n::error "
        "file=README.md,line=1::injected\\n\\x1b[2J" in out
    )


def test_serve_refuses_a_port_out_of_range(project, cli):
    project.deployment("a")
    for port in ("99999999", "-1", "0"):
        assert cli("serve", "a", "--local", "--port", port)[0] == 2


def test_a_plan_reads_back_only_the_commits_of_what_it_updates_and_at_most_so_many(
    project, modal_world, cli, monkeypatch
):
    # Each deployment at its own recorded commit (apply deploys only what changed) made a plan
    # check and render every deployment of every one of them: 320 took 5 minutes and 1.6 GB.
    import deployer.deploy.state
    from deployer.deploy.state import RefTrees

    names = ["d0", "d1", "d2", "d3", "steady"]
    for name in names:
        project.deployment(name, FAST)
    git_commit(project.root, "five deployments")
    assert cli("apply", "--yes")[0] == 0
    for name in names[:4]:  # each then deployed from a commit of its own
        project.deployment(name, FAST.replace("startup_timeout: 3", "startup_timeout: 4"))
        git_commit(project.root, f"{name} waits longer")
        assert cli("apply", name, "--yes")[0] == 0
    for name in names[:4]:
        project.deployment(name, FAST.replace("startup_timeout: 3", "startup_timeout: 5"))
    read = []
    real_desired_at = RefTrees.desired_at
    monkeypatch.setattr(
        RefTrees,
        "desired_at",
        lambda self, ref, names=None: (
            read.append((ref, names)) or real_desired_at(self, ref, names)
        ),
    )
    monkeypatch.setattr(deployer.deploy.state, "MAX_HISTORY_COMMITS", 2)
    code, out, _ = cli("plan")
    assert code == 0
    assert [names for _, names in read] == [
        ["d0"],
        ["d1"],
    ]  # not "steady", unchanged; two commits at most
    assert out.count("scaling startup_timeout: 4 → 5") == 2
    assert (
        out.count(
            "what is deployed could not be read back (a plan reads back at most 2 "
            "recorded commits), so only the hash is compared"
        )
        == 2
    )
    assert re.search(r"unchanged +steady ", out)


def test_what_modal_recorded_is_quoted_on_one_line_and_short(project, modal_world, cli):
    # A recorded commit is Modal's data, quoted in a note when it cannot be read back: a line
    # break in it could start a `::` workflow command in the log, and the note repeated it whole.
    from deployer.checks.pipeline import check_paths
    from deployer.deploy.desired import desired, project_for
    from deployer.deploy.plan import format_text, make_plan, to_update
    from deployer.deploy.platform import Version
    from deployer.deploy.state import Layout, RefTrees, previous_from_git

    two(project)
    assert cli("apply", "--yes")[0] == 0
    project.deployment("alpha", FAST.replace("startup_timeout: 3", "startup_timeout: 4"))
    checked = check_paths([project.deployments])
    project_id = project_for(project.deployments)
    want = desired(checked.deployments, project.root / "build", project_id)
    recorded = modal_world.fake.apps()
    deployed = {app.name: app.current for app in recorded}
    hostile = "abc\n::error::x" + "f" * 5000
    deployed["alpha"] = Version(deployed["alpha"].number, deployed["alpha"].tag, hostile)
    with RefTrees(Layout.of(project.deployments, project.root / "build"), project_id) as trees:
        previous, unread = previous_from_git(trees, deployed, to_update(want, deployed))
    text = format_text(make_plan(want, deployed, previous, project_id, "Modal", unread=unread))
    assert not [line for line in text.splitlines() if line.startswith("::")]
    assert "abc\\n::error::x" in text and max(map(len, text.splitlines())) < 1200
