"""Regular expressions from untrusted text (smoke expectations, adapter configs): read as Python's
re reads them, and matched in a child process that a deadline, a memory limit and a time budget
per check stop. Each test that a limit stops something gives it unbounded work, so only that limit
can end it: the outcome is asserted, never how long it took."""

from __future__ import annotations

import pytest

from deployer.checks.pipeline import check_paths

from ..conftest import MINIMAL
from .helpers import rules

# Tens of seconds of compiling even on a fast machine ((?i) over a wide range, per class): a
# deadline ends it, and costs no more than itself, as the child compiling it is killed there.
SLOW_TO_COMPILE = "(?i)" + "[\\u0100-\\U0010ffff]" * 5000


@pytest.mark.parametrize(
    ("pattern", "reply", "matches"),
    [
        (r"(e4)\1", "1. e4e4", True),
        (r"(?<=1\. )Nf3", "1. Nf3", True),
        (r"\d{,2}-", "x-", True),  # 0 to 2 digits, as in Python; RE2 would want the text "{,2}"
        (r"^Ne5\Z", "Ne5\n", False),
    ],
)
def test_smoke_patterns_are_pythons_regular_expressions(pattern, reply, matches):
    from deployer.core.patterns import any_match

    assert any_match(pattern, [reply]) is matches


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(e4", "missing ), unterminated subpattern at position 0"),
        ("a{2,1}", "min repeat greater than max repeat at position 2"),
    ],
)
def test_smoke_patterns_python_cannot_compile_are_findings(project, pattern, reason):
    project.deployment(
        "d", MINIMAL + f'smoke: {{expect: {{Qwen/Qwen3-4B-Instruct-2507: "{pattern}"}}}}\n'
    )
    (finding,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "smoke.bad-pattern"
    ]
    assert finding.message.endswith(reason) and finding.line == 8


def test_a_smoke_pattern_too_large_to_compile_is_a_finding(project, cli):
    project.deployment(
        "d", MINIMAL + "smoke: {expect: {Qwen/Qwen3-4B-Instruct-2507: 'a{4294967296}'}}\n"
    )
    assert "smoke.bad-pattern" in rules(cli)


def test_a_pattern_slow_to_compile_is_a_finding_not_a_wait(project):
    project.deployment(
        "d",
        MINIMAL + f'smoke: {{expect: {{Qwen/Qwen3-4B-Instruct-2507: "{SLOW_TO_COMPILE}"}}}}\n',
    )
    (finding,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "smoke.bad-pattern"
    ]
    assert "compiling it took over 2 s" in finding.message


def test_a_backtracking_smoke_pattern_cannot_hang_the_smoke_check():
    from deployer.core.patterns import PatternTooSlow, any_match

    # Python's re backtracks through every way of splitting 60 a's into ones and twos: days.
    pattern, reply = r"^(a|aa)+$", "a" * 60 + "b"
    with pytest.raises(PatternTooSlow, match="took over 0.5 s"):
        any_match(pattern, [reply], seconds=0.5)
    assert any_match(pattern, ["a" * 60]) is True


def test_a_pattern_whose_matching_eats_memory_stops_at_the_matchers_limit():
    from deployer.core.patterns import PatternTooSlow, any_match

    # Each repeat of the group keeps backtracking state: about 1.5 GiB for this 6 MB reply. The
    # deadline is far beyond the seconds that takes on a busy machine: only the memory limit ends it.
    with pytest.raises(PatternTooSlow, match="MemoryError"):
        any_match(r"(?:(a)|b)*c", ["ab" * 3_000_000], seconds=600)


def test_patterns_share_one_time_budget_per_check(project, monkeypatch):
    # A deadline per pattern alone would let 1,001 aliases of one slow pattern take 1,001 times it.
    # With 4 s for the check and 2 s per pattern, at most two are tried; the rest are not.
    import deployer.checks.pipeline

    monkeypatch.setattr(deployer.checks.pipeline, "CHECK_SECONDS", 4.0)
    expect = "".join(
        f"    m{i}: *p\n" if i else f'    m{i}: &p "{SLOW_TO_COMPILE}"\n' for i in range(30)
    )
    project.deployment("d", MINIMAL + "smoke:\n  expect:\n" + expect)
    found = [
        d.message
        for d in check_paths([project.deployments]).diagnostics
        if d.rule == "smoke.bad-pattern"
    ]
    tried = [message for message in found if "compiling it took over" in message]
    assert len(found) == 30 and 1 <= len(tried) <= 2
    assert all(
        "was not tried: the time for checking patterns is spent" in message
        for message in found
        if message not in tried
    )


def test_a_budget_inside_another_spends_the_outer_one():
    # A plan checks the deployments of several commits: a fresh budget per check would make the
    # total grow with the number of commits.
    from deployer.core import patterns

    with patterns.budget(0), patterns.budget(100):
        with pytest.raises(
            patterns.PatternTooSlow, match="the time for checking patterns is spent"
        ):
            patterns.any_match("a", ["a"])
    with patterns.budget(100):
        assert patterns.any_match("a", ["a"])
