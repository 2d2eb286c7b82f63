"""The real-audio benchmark: a model on real recordings it did not train on, through the runtime engine.

Splits the real corpus by source (the recipe's split: validation sources never reach training), synthesises
scenes of validation target recordings in validation background recordings, and reports event F1 (200 ms collar)
and segment F1 (1 s) per class and macro over the classes with real validation events (with the number of events
and recordings behind each), false alarms per minute and share of time flagged on every validation background
recording alone (per kind), and events on silence and steady noise. See ``streamdet.train.real_eval``.

    python benchmarks/real_audio.py                                  # the bundled model, ../shared/data/sounds
    python benchmarks/real_audio.py --model runs/alerts/alerts.onnx --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from streamdet.train.real_eval import evaluate_real

from streamdet.session import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "sounds"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (scenes per class, backgrounds per kind, steady signals)."""
    sc = report["scenes"]
    lines = [f"Real scenes: {sc['scenes']} scenes, {sc['minutes']} min (seed {sc['seed']}); macro over "
             f"{', '.join(sc['classes'])}: event F1 **{sc['event_f1_macro']}**, "
             f"segment F1 **{sc['segment_f1_macro']}**",
             "", "| class | event F1 | segment F1 | events | recordings |", "|---|---|---|---|---|"]
    for c, row in sc["per_class"].items():
        if row["events"]:
            lines.append(f"| {c} | {row['event_f1']} | {row['segment_f1']} | {row['events']} | {row['recordings']} |")
    bg = report["backgrounds"]
    o = bg["overall"]
    lines += ["", f"Backgrounds alone: {o['clips']} recordings, {o['minutes']} min: **{o['false_alarms_per_minute']} "
              f"false alarms per minute**, {100 * (o['flagged_share'] or 0):.1f} % of the time flagged",
              "", "| kind | recordings | minutes | events | per minute | time flagged | labels |",
              "|---|---|---|---|---|---|---|"]
    for k, row in bg["per_kind"].items():
        labels = ", ".join(f"{lab} {n}" for lab, n in row["labels"].items()) or "-"
        lines.append(f"| {k} | {row['clips']} | {row['minutes']} | {row['events']} | {row['false_alarms_per_minute']} "
                     f"| {100 * (row['flagged_share'] or 0):.1f} % | {labels} |")
    st = report["steady"]
    lines += ["", f"Silence and steady noise ({len(st['per_signal'])} signals of {st['seconds_each']:g} s): "
              f"{st['events']} events"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print Markdown (and write JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(BUNDLED_MODEL), help="ONNX model (default: the bundled alerts model)")
    ap.add_argument("--real", default=str(DEFAULT_CORPUS), help="the real-audio corpus (targets/, backgrounds/)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "real_audio"), help="where scenes are synthesised")
    ap.add_argument("--scenes", type=int, default=150, help="number of 10 s validation scenes")
    ap.add_argument("--seed", type=int, default=101, help="scene seed")
    ap.add_argument("--hop", type=float, default=0.5)
    ap.add_argument("--lookahead", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the full report here")
    args = ap.parse_args(argv)
    if not (Path(args.real) / "targets" / "MANIFEST.csv").is_file():
        print(f"error: {args.real} is not a real-audio corpus (no targets/MANIFEST.csv); pass --real", file=sys.stderr)
        return 2
    t = time.perf_counter()
    report = evaluate_real(args.model, args.real, args.work, n_scenes=args.scenes, scene_seed=args.seed,
                           hop=args.hop, lookahead=args.lookahead, threads=args.threads)
    report["seconds"] = round(time.perf_counter() - t, 1)
    print(markdown(report))
    print(f"\n({report['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
