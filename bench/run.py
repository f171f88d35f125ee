#!/usr/bin/env python3
"""Benchmark where users wait on the CLI: whole-process wall time of deployer commands on N
generated deployments, beside `modal --help` and `check-jsonschema` on the same files.

    .venv/bin/python bench/run.py                 # N = 10, 100, 1000
    .venv/bin/python bench/run.py --sizes 1000 --runs 7

Each deployment has 1-8 Hub adapters (seeded, so every run generates the same files) and every
field the schema requires, so check-jsonschema validates the same documents the deployer does; a
shared _defaults.yaml is merged by the deployer (check-jsonschema does not know about it and only
sees each file). The Hub is never contacted (HF_HUB_OFFLINE=1), so what is measured is this
machine's work. Prints a table: median, min and max of several runs, and ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCHEMA = REPO / "deployer" / "deployment.schema.json"
GPUS = ["T4", "L4", "A10G", "L40S", "A100-80GB", "H100"]


def generate(folder: Path, count: int, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    deployments = folder / "deployments"
    deployments.mkdir(parents=True)
    (deployments / "_defaults.yaml").write_text(
        "image:\n  python: '3.12'\nscaling:\n  scaledown_window: 300\n"
    )
    files = []
    for i in range(count):
        adapters = "\n".join(
            f"  - name: adapter-{j}\n    repo: org/lora-{i}-{j}\n    revision: v{j}"
            for j in range(rng.randint(1, 8))
        )
        text = (
            f"name: bench-{i:04d}\n"
            "base_model:\n  repo: Qwen/Qwen3-4B-Instruct-2507\n"
            f"adapters:\n{adapters}\n"
            f"gpu: {rng.choice(GPUS)}\n"
            "vllm:\n  version: '0.11.2'\n  args:\n    enforce-eager: true\n    "
            "max-model-len: 16384\n    max-lora-rank: 64\n"
            "auth:\n  proxy: true\n"
        )
        path = deployments / f"bench-{i:04d}.yaml"
        path.write_text(text)
        files.append(path)
    return files


def timed(command: list[str], cwd: Path, runs: int) -> tuple[float, float, float, int]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    samples = []
    code = 0
    for _ in range(runs):
        start = time.perf_counter()
        code = subprocess.run(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples), max(samples), code


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args()

    deployer, modal, check = (
        str(BIN / "deployer"),
        str(BIN / "modal"),
        shutil.which("check-jsonschema", path=str(BIN)),
    )
    print(
        f"# deployer benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"# median of {args.runs} runs (min-max), whole process wall time, HF_HUB_OFFLINE=1\n")
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, n: str, result, base: float | None = None, note: str = ""):
        median, low, high, code = result
        ratio = f"{median / base:.2f}x" if base else ""
        status = "" if code in (0, 1) else f" (exit {code})"
        rows.append(
            (
                label,
                n,
                f"{median:7.3f} s ({low:.3f}-{high:.3f})",
                (ratio + " " + note).strip() + status,
            )
        )

    help_modal = timed([modal, "--help"], REPO, args.runs)
    help_deployer = timed([deployer, "--help"], REPO, args.runs)
    add("modal --help", "-", help_modal)
    add("deployer --help", "-", help_deployer, help_modal[0], "of modal --help")

    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"deployer-bench-{n}-") as tmp:
            root = Path(tmp)
            files = generate(root, n)
            full = timed([deployer, "validate"], root, args.runs)
            schema_only = timed([deployer, "validate", "--schema-only"], root, args.runs)
            render = timed([deployer, "render", "--out", str(root / "build")], root, args.runs)
            add("deployer validate", str(n), full)
            add("deployer render (validates too)", str(n), render)
            if check:
                reference = timed(
                    [check, "--schemafile", str(SCHEMA), *map(str, files)], root, args.runs
                )
                add("check-jsonschema --schemafile", str(n), reference)
                add(
                    "deployer validate --schema-only",
                    str(n),
                    schema_only,
                    reference[0],
                    "of check-jsonschema",
                )
            else:
                add(
                    "deployer validate --schema-only",
                    str(n),
                    schema_only,
                    note="(check-jsonschema not installed)",
                )
            # plan offline: the working tree against HEAD, both rendered (git history, no Modal).
            git = [
                "git",
                "-C",
                str(root),
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@example.com",
            ]
            subprocess.run([*git, "init", "-q"], check=True)
            subprocess.run([*git, "add", "-A"], check=True)
            subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
            add(
                "deployer plan --against HEAD",
                str(n),
                timed([deployer, "plan", "--against", "HEAD"], root, args.runs),
            )

    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'command':<{widths[0]}}  {'N':>{widths[1]}}  {'time':<{widths[2]}}  ratio")
    for label, n, time_text, ratio in rows:
        print(f"{label:<{widths[0]}}  {n:>{widths[1]}}  {time_text:<{widths[2]}}  {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
