"""Size and speed of the official HTS-AT and AST configurations (random weights), side by side.

Prints, for each model: parameters (stored in the official checkpoint / used in forward), multiply-accumulates
for one 10 s window (front-end and network, counted with ``torch.utils.flop_counter``: convolutions, matmuls and
attention; elementwise ops are not counted) and CPU forward time in fp32 for batch 1 and 8, then the AST / HTS-AT
ratios next to the papers' parameter claims.

    python benchmarks/models.py                    # defaults: 3 timed runs after 1 warm-up, torch's thread count
    python benchmarks/models.py --repeats 5 --threads 2 --batch-sizes 1 8 --json results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch
from streamdet.models import AST, HTSAT, ASTConfig, HTSATConfig, ast_official_state_dict, htsat_official_state_dict
from torch.utils.flop_counter import FlopCounterMode

# The parameter figures the HTS-AT paper (Chen et al., ICASSP 2022) puts side by side: HTS-AT 31M, AST 87M.
PAPER_PARAMS = {"htsat": 31e6, "ast": 87e6}
WINDOW_SECONDS = 10.0
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "relative_position_index", "attn_mask")


def build(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The official-size model with random weights, and its tensors in the official checkpoint layout."""
    torch.manual_seed(0)
    if name == "htsat":
        model = HTSAT(HTSATConfig())
        return model.eval(), htsat_official_state_dict(model)
    model = AST(ASTConfig())
    return model.eval(), ast_official_state_dict(model)


def count_macs(model: torch.nn.Module, fn: Any, *args: torch.Tensor) -> int:
    """Multiply-accumulates of ``fn(*args)`` (FLOPs / 2 as counted by ``FlopCounterMode``).

    AST attention runs on the explicit matmul path while counting: the counter has no formula for PyTorch's CPU
    fused attention kernel and would miss those MACs.
    """
    fused = [m for m in model.modules() if hasattr(m, "fused_attn")]
    for module in fused:
        module.fused_attn = False
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn(*args)
    finally:
        for module in fused:
            module.fused_attn = True
    return counter.get_total_flops() // 2


def time_forward(model: torch.nn.Module, batch: int, samples: int, repeats: int) -> dict[str, float]:
    """Median / min wall time of ``model(waveform)`` over ``repeats`` runs after one warm-up."""
    wave = 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(batch))
    times = []
    with torch.inference_mode():
        model(wave)
        for _ in range(repeats):
            start = time.perf_counter()
            model(wave)
            times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeats}


def measure(name: str, batch_sizes: list[int], repeats: int) -> dict[str, Any]:
    model, official = build(name)
    samples = int(WINDOW_SECONDS * model.sample_rate)
    stored = sum(v.numel() for k, v in official.items() if not k.endswith(_BUFFER_SUFFIXES))
    used = sum(p.numel() for p in model.parameters())
    wave = torch.zeros(1, samples)
    total = count_macs(model, model, wave)
    frontend = count_macs(model, model.frontend, wave)
    timings = {str(b): time_forward(model, b, samples, repeats) for b in batch_sizes}
    return {
        "model": name,
        "window_samples": samples,
        "sample_rate": model.sample_rate,
        "params_stored": stored,
        "params_used": used,
        "macs_total": total,
        "macs_frontend": frontend,
        "macs_network": total - frontend,
        "time": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__} | {cpu} | threads {torch.get_num_threads()}")
    print(f"one {WINDOW_SECONDS:g} s window per item, fp32, random weights, median of {args.repeats} runs\n")
    results = {name: measure(name, args.batch_sizes, args.repeats) for name in ("htsat", "ast")}

    header = f"{'model':7} {'params stored':>14} {'params used':>12} {'GMACs total':>12} {'front-end':>10}"
    header += "".join(f" {f'batch {b}: median / min (s)':>28}" for b in args.batch_sizes)
    print(header)
    for name, r in results.items():
        line = f"{name:7} {r['params_stored']:>14,} {r['params_used']:>12,} {r['macs_total'] / 1e9:>12.2f}"
        line += f" {r['macs_frontend'] / 1e9:>10.3f}"
        line += "".join(
            f" {r['time'][str(b)]['median_s']:>19.3f} / {r['time'][str(b)]['min_s']:.3f}" for b in args.batch_sizes
        )
        print(line)

    h, a = results["htsat"], results["ast"]
    print("\nAST / HTS-AT ratios (measured vs the papers' claim)")
    print(f"  parameters used : {a['params_used'] / h['params_used']:.2f}x   "
          f"(papers: {PAPER_PARAMS['ast'] / 1e6:.0f}M / {PAPER_PARAMS['htsat'] / 1e6:.0f}M = "
          f"{PAPER_PARAMS['ast'] / PAPER_PARAMS['htsat']:.2f}x)")
    print(f"  parameters stored: {a['params_stored'] / h['params_stored']:.2f}x")
    print(f"  MACs per window : {a['macs_total'] / h['macs_total']:.2f}x (network only "
          f"{a['macs_network'] / h['macs_network']:.2f}x)")
    for b in args.batch_sizes:
        ratio = a["time"][str(b)]["median_s"] / h["time"][str(b)]["median_s"]
        best = a["time"][str(b)]["min_s"] / h["time"][str(b)]["min_s"]
        print(f"  CPU time batch {b}: {ratio:.2f}x median, {best:.2f}x min")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
