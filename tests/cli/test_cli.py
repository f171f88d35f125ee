"""The `deployer` command: exit codes, output formats, and render/schema behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

from deployer.spec.schema import SCHEMA_PATH

from ..conftest import MINIMAL, REPO


def test_valid_files_exit_zero_with_a_summary(project, cli):
    project.deployment("a")
    code, out, err = cli("validate")
    assert (code, err) == (0, "")
    # Offline, the GPU fit of a Hub model cannot be checked, and without DEPLOYER_VLLM_PYTHON
    # vLLM does not judge the command line: said as notes, which never fail a run.
    assert "note: GPU fit not checked" in out
    assert "note: the engine check did not run: DEPLOYER_VLLM_PYTHON is not set" in out
    assert (
        out.splitlines()[-1]
        == "1 file checked: 0 errors, 0 warnings (2 checks skipped, see the notes)"
    )
    assert cli("validate", "--strict")[0] == 0


def test_errors_exit_one_and_show_the_line_with_a_caret(project, cli):
    project.deployment("a", MINIMAL.replace("gpu: A10G", "gpu: A10G\nadapter: []"))
    code, out, err = cli("validate")
    assert code == 1
    assert out.splitlines()[:4] == [
        "deployments/a.yaml:4:1: error: unknown key 'adapter' [adapter]",
        "     4 | adapter: []",
        "       | ^",
        "  hint: did you mean 'adapters'?",
    ]
    assert "1 error" in err


def test_warnings_pass_unless_strict(project, cli):
    project.deployment(
        "a", MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}", "auth: none")
    )
    assert cli("validate")[0] == 0
    assert cli("validate", "--strict")[0] == 1


def test_usage_errors_exit_two(project, cli):
    assert cli("validate", "--format", "xml")[0] == 2
    assert cli("frobnicate")[0] == 2
    project.deployment("chess")
    code, _, err = cli("render", "ches")
    assert code == 2 and "did you mean 'chess'?" in err


def test_missing_deployments_folder_is_an_error_not_a_traceback(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("validate")
    assert code == 1 and "deployments: error: no such file or folder" in out


def test_github_format_prints_escaped_workflow_annotations(project, cli):
    project.deployment("a", MINIMAL.replace('version: "0.11.2"', "version: 0.10"))
    code, out, _ = cli("validate", "--format", "github")
    assert code == 1
    assert out.strip() == (
        "::error file=deployments/a.yaml,line=5,col=12,title=deployer%3A vllm.version::"
        "expected a string in vllm.version, got the number 0.1%0A"
        'hint: YAML reads the unquoted 0.10 as the number 0.1; write it in quotes: "0.10"'
    )


def test_render_writes_every_deployment_then_reports_unchanged(project, cli):
    project.deployment("a")
    project.deployment("b", MINIMAL.replace("A10G", "T4"))
    code, out, _ = cli("render")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["written", "build/a/app.py"],
        ["written", "build/b/app.py"],
    ]
    assert cli("render", "b")[1].split()[:2] == ["unchanged", "build/b/app.py"]


def test_render_writes_nothing_when_any_deployment_has_errors(project, cli):
    project.deployment("a")
    project.deployment("b", MINIMAL.replace("A10G", "Z80"))
    code, _, err = cli("render")
    assert code == 1 and "nothing rendered" in err
    assert not (project.root / "build").exists()


def test_render_check_detects_stale_output_without_writing(project, cli):
    project.deployment("a")
    assert cli("render", "--check")[0] == 1
    assert not (project.root / "build").exists()
    cli("render")
    assert cli("render", "--check")[0] == 0
    project.deployment("a", MINIMAL.replace("A10G", "L4"))
    code, out, _ = cli("render", "--check")
    assert code == 1 and "out of date" in out


def test_render_json_lists_paths_and_hashes(project, cli):
    project.deployment("a")
    code, out, _ = cli("render", "--out", "apps", "--format", "json")
    (item,) = json.loads(out)["rendered"]
    assert code == 0 and item["path"] == "apps/a/app.py" and len(item["content_hash"]) == 64


def test_schema_command_prints_the_packaged_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0 and json.loads(out) == json.loads(SCHEMA_PATH.read_text())


def test_help_shows_examples(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "examples:" in out and "deployer render --check" in out


def test_console_script_runs_the_readme_main_job_in_the_repo():
    result = subprocess.run(
        [sys.executable, "-m", "deployer", "validate"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 4 for what cannot be checked offline, 6 for the Hub sources the lock records unresolved;
    # the public endpoint chess-puzzle accepts
    assert "3 files checked: 0 errors, 10 warnings, 1 accepted" in result.stderr


def test_a_directory_named_like_a_yaml_file_is_not_a_traceback(project, cli):
    (project.deployments / "weird.yaml").mkdir()
    project.deployment("a")
    code, out, err = cli("validate", "deployments", "deployments/weird.yaml")
    assert "Traceback" not in out + err


def test_schema_only_validation_skips_semantic_checks(project, cli):
    project.deployment("a", MINIMAL.replace("api_key: {secret: test-api-key}", "proxy: false"))
    assert cli("validate")[0] == 1  # auth.nothing-enabled, a semantic check
    code, out, _ = cli("validate", "--schema-only")
    assert code == 0 and "0 errors" in out


def test_help_lists_the_commands_in_their_usual_order(cli):
    code, out, _ = cli("--help")
    listed = [
        line.split()[0] for line in out.splitlines() if line.startswith("    ") and line[4] != " "
    ]
    assert listed == [
        "validate", "render", "adapter", "new", "lock", "serve", "smoke", "fit",
        "plan", "apply", "status", "rollback", "prefetch", "endpoints", "schema",
    ]  # fmt: skip


def test_building_the_parser_imports_no_heavy_library():
    # `deployer --help` stays instant only while the commands import these inside themselves.
    heavy = ("modal", "huggingface_hub", "jinja2", "jsonschema", "fastjsonschema", "yaml")
    probe = (
        "import sys\nfrom deployer.cli.main import build_parser\nbuild_parser()\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_usage_error_names_the_command_on_each_complaint(project, cli):
    project.deployment("chess")
    code, out, err = cli("render", "ches", "go")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "deployer render: no deployment named 'ches' in deployments/ (did you mean 'chess'?)",
        "deployer render: no deployment named 'go' in deployments/ (known deployments: chess)",
    ]


def test_a_table_pads_every_column_but_the_last_to_its_widest_cell():
    from deployer.core.table import table

    text = table([("alpha", "A10G", "https://a"), ("b", "H100:2", "")], ("NAME", "GPU", "URL"))
    assert text.splitlines() == [
        "NAME   GPU     URL",
        "alpha  A10G    https://a",
        "b      H100:2  ",
    ]


def test_a_table_without_a_header_or_rows():
    from deployer.core.table import table

    assert table([("a", "bb"), ("ccc", "d")]) == "a    bb\nccc  d"
    assert table([]) == ""
