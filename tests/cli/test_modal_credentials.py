"""Every command that talks to Modal says the same thing, before starting, when it has no token."""

from __future__ import annotations

import pytest

from ..conftest import MINIMAL

NO_CREDENTIALS = (
    "no Modal credentials (MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or `modal token new`)"
)


@pytest.fixture
def no_token(project, modal_world, monkeypatch):
    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(project.root / "no-such.toml"))
    project.deployment("alpha", MINIMAL)
    return modal_world


@pytest.mark.parametrize(
    "command",
    [["apply", "--yes"], ["status"], ["rollback", "alpha"], ["prefetch", "alpha"]],
)
def test_a_command_that_needs_modal_stops_before_asking_it(no_token, cli, command):
    code, _, err = cli(*command)
    assert code == 1
    assert err.strip().endswith(f"deployer {command[0]}: {NO_CREDENTIALS}")
    assert no_token.argv() == []  # Modal was not asked, so it had no "Token missing" to say


def test_endpoints_without_a_token_still_shows_what_it_knows(no_token, cli):
    code, out, _ = cli("endpoints", "alpha")
    assert code == 0 and "<unknown: no Modal credentials>" in out
