"""git, run safely on a repository a pull request may have shaped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from deployer.core.paths import repository_root


def git_command(folder: Path) -> list[str] | None:
    """`git` bound to the repository holding `folder`, or None outside one.

    Never `git -C folder`: git takes a folder holding HEAD, config, objects and refs for a
    repository of its own, and a pull request can commit such files (a `deployments/` that is a
    bare repository, whose committed config runs a smudge filter of its choosing in `git archive`
    and names another project's remote). The repository is the one whose `.git` we find going up,
    named explicitly, and implicit bare repositories are refused."""
    root = git_root(folder)
    if root is None:
        return None
    return [
        "git",
        "-c",
        "safe.bareRepository=explicit",
        f"--git-dir={root / '.git'}",
        f"--work-tree={root}",
        "-C",
        str(root),
    ]


def git(folder: Path, *args: str) -> str | None:
    command = git_command(folder)
    return git_output([*command, *args]) if command else None


def git_output(command: list[str]) -> str | None:
    """What a git command prints, stripped; None if it cannot run or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_root(folder: Path) -> Path | None:
    """The work tree holding `folder`: the one git_command binds git to (no git process needed)."""
    root = repository_root(Path(os.path.abspath(folder)))
    return root if (root / ".git").exists() else None
