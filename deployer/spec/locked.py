"""What the lock (lock/ beside deployments/) holds for one deployment, as far as it still matches
the YAML: the commits its Hub sources download at, and its image's locked package set.

`deployer.sources.lock` reads the lock and builds this value; render lays out what is locked and
the checks report what is not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """Something the lock does not pin for a deployment: a source or the image, and why."""

    what: str  # e.g. "adapter 'chess' (org/chess-lora@main)", "the image's packages"
    why: str  # e.g. "not in the lock", "locked for vLLM 0.11.2; the YAML now says 0.12.0"
    yaml_path: tuple[str | int, ...]  # where the YAML says what is not locked


@dataclass(frozen=True)
class Locked:
    file: str  # the lock's sources file, as displayed in messages
    exists: bool  # False: the project keeps no lock, and everything floats
    base_commit: str | None = None  # the base model's locked commit (a Hub source)
    adapter_commits: tuple[tuple[str, str], ...] = ()  # (adapter name, locked commit)
    requirements: str | None = None  # the image's locked package set, as uv wrote it
    missing: tuple[Gap, ...] = ()  # what the lock lacks, or locks differently from the YAML
    unresolved: tuple[Gap, ...] = ()  # sources the lock records without a commit, and why
    problem: str = ""  # why the lock cannot be read, if it cannot

    def adapter_commit(self, name: str) -> str | None:
        return dict(self.adapter_commits).get(name)
