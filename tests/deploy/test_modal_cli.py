"""deployer.deploy.platform.modal_cli, the real Modal platform, run against a fake `modal` executable.

Modal's servers cannot be reached here: these tests check the subprocess code (argv, --env, JSON
shapes as modal 1.6 prints them, exit codes and error messages) against tests/fake_modal.py's
executable, and scripted executables for outputs the fake does not produce.
"""

from __future__ import annotations

import json

import pytest

from deployer.deploy.platform import PlatformError, Version
from deployer.deploy.platform.modal_cli import ModalCli, has_credentials


def script(project, body: str):
    exe = project.write("bin/modal", "#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return ModalCli(executable=[str(exe)])


def test_every_command_passes_the_environment(project, modal_world):
    app = project.write("build/a/app.py", 'SERVED_MODEL_NAME = "m"\nADAPTERS = {"x": {}}\n')
    modal = ModalCli("main")
    modal.deploy(app, "a", "deployer-00000000-" + "0" * 30)
    assert modal.web_url("a") == f"{modal_world.server.url}/a"  # from Modal's API, in env main
    assert modal.apps()[0].current == Version(1, "deployer-00000000-" + "0" * 30, "")
    modal.rollback("a", 1)
    modal.stop("a")
    assert all(argv[-2:] == ["--env", "main"] for argv in modal_world.argv())
    assert modal_world.argv()[0][:6] == [
        "deploy",
        str(app),
        "--name",
        "a",
        "--tag",
        "deployer-00000000-" + "0" * 30,
    ]


def test_an_app_never_deployed_has_an_empty_history(project, modal_world):
    assert ModalCli().history("nothing-here") == []


def test_an_unknown_environment_is_an_error_naming_the_command(project, modal_world):
    with pytest.raises(
        PlatformError,
        match=r"`modal app list --json --env staging` failed \(exit 1\): Environment 'staging' "
        r"not found",
    ):
        ModalCli("staging").apps()


def test_history_without_tags_reads_as_untagged(project):
    rows = [
        {
            "version": "v2",
            "time_deployed": "t",
            "client": "1.6.4",
            "deployed_by": "me",
            "commit": None,
        },
        {
            "version": "v1",
            "time_deployed": "t",
            "client": "1.6.4",
            "deployed_by": "me",
            "commit": "abc1234*",
        },
    ]
    modal = script(project, f"echo '{json.dumps(rows)}'\n")
    assert modal.history("a") == [Version(2, "", ""), Version(1, "", "abc1234*")]


def test_output_that_is_not_json_is_a_clear_error(project):
    modal = script(project, "echo 'Apps in environment main'\n")
    with pytest.raises(PlatformError, match="printed something that is not JSON"):
        modal.apps()


def test_a_missing_modal_command_says_how_to_install_it(project):
    with pytest.raises(PlatformError, match="pip install modal"):
        ModalCli(executable=[str(project.root / "nowhere" / "modal")]).apps()


def test_the_url_lookup_gives_up_within_its_deadline_when_modal_is_unreachable(
    project, monkeypatch
):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    modal = ModalCli()
    modal.url_timeout = 3
    with pytest.raises(PlatformError, match="cannot read the URL of 'a'"):
        modal.web_url("a")


def test_credentials_come_from_the_environment_or_the_modal_config(project, monkeypatch):
    config = project.write("modal.toml", "[default]\ntoken_id = 'ak-1'\ntoken_secret = 'as-1'\n")
    assert has_credentials(
        {"MODAL_TOKEN_ID": "a", "MODAL_TOKEN_SECRET": "b", "MODAL_CONFIG_PATH": "/nonexistent"}
    )
    assert has_credentials({"MODAL_CONFIG_PATH": str(config)})
    assert not has_credentials({"MODAL_TOKEN_ID": "a", "MODAL_CONFIG_PATH": "/nonexistent"})


def test_modal_run_gets_its_options_before_the_function(project, modal_world, monkeypatch):
    app = project.write(
        "build/a/app.py",
        'APP_NAME = "a"\nSERVED_MODEL_NAME = "m"\n\ndef download_weights():\n    pass\n',
    )
    ModalCli("main").run(app, "download_weights")
    assert modal_world.argv()[-1] == ["run", "--env", "main", f"{app}::download_weights"]
    from ..fake_modal import STATE_ENV
    from ..fake_modal import main as fake_modal  # the fake refuses what modal 1.6 refuses

    monkeypatch.setenv(STATE_ENV, str(modal_world.fake.folder))

    assert fake_modal(["run", f"{app}::download_weights", "--env", "main"]) == 2


def test_the_url_is_asked_of_modals_api_not_read_from_deploy_output(project, modal_world):
    app = project.write(
        "build/a/app.py",
        'SERVED_MODEL_NAME = "m"\nimage = modal.Image.debian_slim().env('
        '{"OMP_NUM_THREADS": "8 serve -> https://elsewhere.example/x"})\n',
    )
    modal = ModalCli()
    assert modal.deploy(app, "a", "t") is None
    assert modal.web_url("a") == f"{modal_world.server.url}/a"


def test_an_app_modal_does_not_know_has_no_url(project, modal_world):
    assert ModalCli().web_url("never-deployed") is None
    assert ModalCli("main").web_url("never-deployed") is None


def test_recent_logs_asks_modal_for_the_apps_last_entries(project, modal_world):
    from ..fake_modal import START_FAILURE

    app = project.write("build/a/app.py", 'SERVED_MODEL_NAME = "m"\n')
    modal_world.fake.next_deploy_behaves("a", "start-fails")
    modal = ModalCli("main")
    modal.deploy(app, "a", "t")
    lines = modal.recent_logs("a", 5)
    assert len(lines) == 5 and lines[-1] == START_FAILURE
    assert modal_world.argv()[-1] == ["app", "logs", "a", "--tail", "5", "--env", "main"]


# What modal 1.6 prints for `modal app logs` is each entry's text as the container wrote it, passed
# through its output manager: run here with the real one, fed entries a failed start writes.
REAL_PRINTER = """\
import asyncio, os, sys
if sys.argv[1:2] == ["colour"]:  # as if the user's environment forced colours on
    os.environ.pop("NO_COLOR", None)
    os.environ.update(FORCE_COLOR="1", TERM="xterm-256color")
from modal._output.manager import OutputManager
from modal.cli.utils import _drain_batches
from modal.output import enable_output
from modal_proto import api_pb2

STDOUT, STDERR, INFO = (
    api_pb2.FILE_DESCRIPTOR_STDOUT, api_pb2.FILE_DESCRIPTOR_STDERR, api_pb2.FILE_DESCRIPTOR_INFO
)
ENTRIES = [
    (STDOUT, "Starting vLLM: python -m vllm.entrypoints.openai.api_server --port 8000\\n"),
    (STDERR, "Loading shards:   0% | 0/2\\rLoading shards: 100% | 2/2\\r"),
    (STDERR, "\\nTraceback (most recent call last):\\n\\n  File \\"models.py\\", line 4\\n"),
    (STDERR, "ValueError: LoRA rank 64 is greater than max_lora_rank 16\\n"),
    (INFO, "Runner failed with exception: VllmStartFailed"),
]


async def batches():
    entries = [api_pb2.TaskLogs(data=data, file_descriptor=fd) for fd, data in ENTRIES]
    yield api_pb2.TaskLogsBatch(items=entries)


with enable_output():
    asyncio.run(_drain_batches(OutputManager.get(), batches(), []))
"""


@pytest.mark.parametrize("colour", ["plain", "colour"])
def test_recent_logs_reads_what_modals_own_printer_writes(project, colour):
    import sys

    printer = project.write("bin/modal", f"#!{sys.executable}\n{REAL_PRINTER}")
    printer.chmod(0o755)
    modal = ModalCli(executable=[str(printer), colour])
    assert (
        modal.recent_logs("a", 4)
        == [
            "Loading shards: 100% | 2/2",
            "Traceback (most recent call last):",
            '  File "models.py", line 4',
            "ValueError: LoRA rank 64 is greater than max_lora_rank 16",
            "Runner failed with exception: VllmStartFailed",
        ][-4:]
    )
    assert modal.recent_logs("a", 20)[0].startswith("Starting vLLM: python -m vllm")


def test_logs_modal_cannot_give_are_an_error_within_the_deadline(project):
    modal = script(project, "echo 'Could not find a deployed app named a' >&2; exit 1\n")
    with pytest.raises(PlatformError, match=r"`modal app logs a --tail 20` failed \(exit 1\)"):
        modal.recent_logs("a", 20)
    modal = script(project, "exec sleep 30\n")
    modal.logs_timeout = 1
    with pytest.raises(PlatformError, match=r"did not finish within 1 s"):
        modal.recent_logs("a", 20)
