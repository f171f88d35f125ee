"""`deployer fit`: how a deployment fits its GPU's memory, what it costs, which GPUs would do."""

from __future__ import annotations

import argparse
import sys

from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, folder_options, select
from deployer.core.table import table

TABLE_COLUMNS = (
    "DEPLOYMENT",
    "GPU",
    "FITS",
    "MAX-MODEL-LEN",
    "MOST THAT FITS",
    "$/WARM HOUR",
    "CHEAPEST GPU THAT FITS",
)


def register(commands) -> None:
    fit = commands.add_parser(
        "fit",
        parents=[folder_options()],
        help="GPU memory breakdown and cost of a deployment",
        description="Show how a deployment's model, LoRA buffers and context fit its GPU (the "
        "arithmetic of vLLM's start-up check), its cost per warm hour, and the cheapest "
        "GPUs that fit. With one NAME, the breakdown; otherwise a table of all. Needs "
        "the base model's config.json (a local model, the Hugging Face cache, or the "
        "Hub). Exit 1 if any does not fit or could not be sized.",
        epilog="examples:\n  deployer fit chess-puzzle\n  deployer fit\n  deployer fit "
        "chess-puzzle --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="one deployment for its breakdown; several, or none for all, for a table",
    )
    fit.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    fit.set_defaults(run=cmd_fit)


def cmd_fit(args) -> int:
    from deployer.vllm.fit import assess

    _, selected, code = select(args, args.names, tolerate="fit.", alone=True)
    if selected is None:
        return code
    results = [(d, assess(d)) for d in selected]
    if args.format == "json":
        import json

        print(json.dumps([_fit_json(d, a) for d, a in results], indent=2))
    elif len(args.names) == 1:
        deployment, assessment = results[0]
        if isinstance(assessment, str):
            print(f"deployer fit: cannot size {deployment.name}: {assessment}", file=sys.stderr)
            print(f"  cost per warm hour: {_dollars(deployment.gpu)} ({deployment.gpu.modal_spec})")
        else:
            _print_fit(deployment, assessment)
    else:
        _print_fit_table(results)
    return (
        EXIT_OK if all(not isinstance(a, str) and a.fit.fits for _, a in results) else EXIT_PROBLEMS
    )


def _dollars(gpu) -> str:
    """`$1.10`, or `unknown` for a GPU without a price."""
    from deployer.vllm.fit import cents_per_hour

    cents = cents_per_hour(gpu)
    return "unknown" if cents is None else f"${cents // 100}.{cents % 100:02d}"


def _fit_json(deployment, a) -> dict:
    # Money in JSON is whole cents per hour (an int, null when unpriced): exact, unlike dollars
    # in a binary float.
    from deployer.vllm.fit import cents_per_hour

    if isinstance(a, str):
        return {
            "deployment": deployment.name,
            "gpu": deployment.gpu.modal_spec,
            "fits": None,
            "not_checked": a,
            "cents_per_warm_hour": cents_per_hour(deployment.gpu),
        }
    fit, shape = a.fit, a.shape
    return {
        "deployment": deployment.name,
        "gpu": deployment.gpu.modal_spec,
        "fits": fit.fits,
        "gpu_memory_bytes": fit.total_bytes,
        "gpu_memory_utilization": fit.utilization,
        "budget_bytes": fit.budget_bytes,
        "params": shape.params,
        "weights_counted_from": shape.weights_counted,
        "dtype": shape.dtype,
        "weight_bytes": fit.weight_bytes,
        "lora_slots": fit.lora_slots,
        "lora_rank": fit.lora_rank,
        "lora_bytes": fit.lora_bytes,
        "overhead_bytes": fit.overhead_bytes,
        "kv_budget_bytes": fit.kv_budget_bytes,
        "kv_bytes_per_token": fit.kv_bytes_per_token,
        "max_model_len": fit.max_model_len,
        "max_model_len_from": fit.max_model_len_source,
        "needed_kv_bytes": fit.needed_kv_bytes,
        "max_fitting_len": fit.max_fitting_len,
        "cents_per_warm_hour": cents_per_hour(deployment.gpu),
        **_serving_json(deployment, a),
        "gpus_fitting_max_model_len": [
            {"gpu": g.modal_spec, "cents_per_hour": cents_per_hour(g)}
            for g, _ in a.gpus_for_full_context
        ],
        "cheapest_fitting_gpu": {
            "gpu": a.cheapest[0].modal_spec,
            "cents_per_hour": cents_per_hour(a.cheapest[0]),
        }
        if a.cheapest
        else None,
    }


def _serving_json(deployment, a) -> dict:
    from deployer.vllm.concurrency import concurrency

    batching = concurrency(deployment)
    return {
        "concurrency": {
            "max_inputs": batching.max_inputs,
            "target_inputs": batching.target_inputs,
            "from": batching.source,
        },
        "max_containers": deployment.scaling.max_containers,
        "first_start_seconds": {
            "download": a.start.download,
            "load": a.start.load,
            "engine": a.start.engine,
            "compile": a.start.compile,
            "total": a.start.total,
        },
        "startup_timeout": deployment.scaling.startup_timeout,
    }


def _print_fit(deployment, a) -> None:
    from deployer.vllm.fit import gib

    fit, shape = a.fit, a.shape

    def row(label: str, value: str, note: str = "") -> str:
        return f"  {label:<40} {value:>12}  {note}".rstrip()

    print(
        f"{deployment.name}: {deployment.base_model.served_name} on "
        f"{deployment.gpu.modal_spec}, vLLM {deployment.vllm.version}\n"
    )
    print(row(f"GPU memory ({deployment.gpu.modal_spec})", gib(fit.total_bytes)))
    print(row(f"x gpu-memory-utilization {fit.utilization}", gib(fit.budget_bytes)))
    print(
        row(
            f"- weights ({shape.params / 1e9:.2f} B params, {shape.dtype})",
            gib(fit.weight_bytes),
            f"from {shape.weights_counted}",
        )
    )
    if fit.lora_slots:
        print(
            row(
                f"- LoRA buffers ({fit.lora_slots} slot(s) x rank {fit.lora_rank})",
                gib(fit.lora_bytes),
            )
        )
    print(row("- activations, CUDA context (estimate)", gib(fit.overhead_bytes)))
    print(row("= left for the KV cache", gib(fit.kv_budget_bytes)))
    print(
        row(
            "KV cache per token",
            f"{fit.kv_bytes_per_token / 1024:.1f} KiB",
            f"{shape.layers} layers x {shape.kv_heads} KV heads x {shape.head_dim} x 2 x "
            f"{shape.kv_dtype_bytes} bytes",
        )
    )
    verdict = "fits" if fit.fits else f"DOES NOT FIT: at most {fit.max_fitting_len:,} tokens"
    print(
        row(
            f"max-model-len {fit.max_model_len:,} needs",
            gib(fit.needed_kv_bytes),
            f"{verdict} ({fit.max_model_len_source})",
        )
    )
    print()
    _print_serving(deployment, a)
    print(f"  cost per warm hour: {_dollars(deployment.gpu)} ({deployment.gpu.modal_spec})")
    if a.gpus_for_full_context:
        print(
            f"  GPUs that hold {fit.max_model_len:,} tokens: "
            + ", ".join(f"{g.modal_spec} {_dollars(g)}/h" for g, _ in a.gpus_for_full_context)
        )
    if a.cheapest and fit.fits and a.usd_per_hour is not None and a.cheapest[1] < a.usd_per_hour:
        print(
            f"  cheaper GPU that fits this deployment: {a.cheapest[0].modal_spec} "
            f"{_dollars(a.cheapest[0])}/h"
        )


def _print_serving(deployment, a) -> None:
    """Requests per container, and whether a first start fits its time budget."""
    from deployer.vllm.concurrency import concurrency

    batching = concurrency(deployment)
    target = (
        f", Modal adds a container above {batching.target_inputs}"
        if batching.target_inputs is not None
        else ""
    )
    containers = deployment.scaling.max_containers
    print(
        f"  requests per container: up to {batching.max_inputs} at once{target} "
        f"({batching.source}); at most {containers or 'unbounded'} containers"
    )
    start, budget = a.start, deployment.scaling.startup_timeout
    steps = f"download {start.download} s + load {start.load} s + vLLM start {start.engine} s"
    if start.compile:
        steps += f" + compile {start.compile} s"
    verdict = "within" if start.total <= budget else "OVER"
    print(
        f"  first start on a fresh volume (estimate): {steps} = {start.total} s, "
        f"{verdict} startup_timeout {budget} s"
    )


def _print_fit_table(results) -> None:
    rows = []
    for deployment, a in results:
        # The price depends on the GPU alone: it shows even when the model could not be read.
        price = _dollars(deployment.gpu).removeprefix("$").replace("unknown", "?")
        if isinstance(a, str):
            rows.append(
                (
                    deployment.name,
                    deployment.gpu.modal_spec,
                    "?",
                    "",
                    "",
                    price,
                    f"not checked: {a}",
                )
            )
            continue
        # The cheapest that holds the context the deployment asks for, as the breakdown lists.
        cheapest = (
            f"{a.cheapest[0].modal_spec} ({_dollars(a.cheapest[0])}/h)" if a.cheapest else "none"
        )
        rows.append(
            (
                deployment.name,
                deployment.gpu.modal_spec,
                "yes" if a.fit.fits else "NO",
                f"{a.fit.max_model_len:,}",
                f"{a.fit.max_fitting_len:,}",
                price,
                cheapest,
            )
        )
    print(table(rows, TABLE_COLUMNS))
