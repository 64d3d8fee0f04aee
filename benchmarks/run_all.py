"""Run every benchmark and write one report: benchmarks/results/summary.json and summary.md.

Runs, one after the other and each in a fresh process (so one's memory or threads never
disturb the next): overhead.py (podium vs a plain PyTorch loop), loader.py (data loader vs
model), tta.py (D4 TTA vs one forward), export.py (onnxruntime and torch bf16 vs torch fp32
prediction), memory.py (peak RSS of training and prediction), scenes.py (whole-scene
prediction vs MONAI's sliding_window_inference, and its peak RSS); overhead.py --fast and
predict_fast.py (bf16 + channels_last vs fp32 training and prediction).
Each writes its own JSON into the results folder and prints its parseable lines
(`overhead 1.012x`, `loader 264.7x`, `resnet18 podium_d4 7.9x`, `memory train 1234 MB`, …),
which are passed through. The summary puts each measured ratio beside its goal with pass/fail
and the load average (1 min) before and after each benchmark: a load above the core count
means the machine was shared and the timings are noisy.

    .venv/bin/python benchmarks/run_all.py            # what `make bench` runs
    .venv/bin/python benchmarks/run_all.py --quick    # few repeats: checks that all of it runs
    .venv/bin/python benchmarks/run_all.py --only overhead memory

Exit status 1 if a benchmark crashed; a missed goal is reported (FAIL), not an error, unless
`--strict`.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(REPO, "benchmarks")
RESULTS = os.path.join(HERE, "results")
BENCHMARKS = (
    "overhead",
    "train_fast",
    "predict_fast",
    "loader",
    "tta",
    "export",
    "memory",
    "scenes",
)
SCRIPTS = {"train_fast": "overhead"}  # benchmark → its script, when the names differ

# benchmark → (full arguments, quick arguments)
ARGUMENTS = {
    # 9 repeats: with 5, the median ratio moved by ±3 % between idle runs (1.054 vs 1.019)
    "overhead": (
        ["--repeats", "9", "--profile"],
        ["--repeats", "1", "--epochs", "1", "--batches", "3"],
    ),
    # the same script with podium's engine at precision auto + memory_format auto
    # at the size the goal is set for (8×256² batches), 4 steps per timed run
    "train_fast": (
        ["--repeats", "5", "--fast", "--size", "256", "--epochs", "1", "--batches", "4"],
        ["--repeats", "1", "--epochs", "1", "--batches", "2", "--fast", "--size", "128"],
    ),
    "predict_fast": (["--repeats", "5"], ["--repeats", "1", "--tile", "128"]),
    "loader": (["--repeats", "5"], ["--repeats", "1"]),
    "tta": (
        ["--repeats", "5"],
        ["--repeats", "1", "--models", "resnet18", "--batch", "2", "--size", "128"],
    ),
    "export": (
        ["--repeats", "5"],
        ["--repeats", "1", "--models", "resnet18", "--cases", "2x128"],
    ),
    "memory": ([], ["--train-epochs", "1", "1"]),
    "scenes": (
        ["--repeats", "5"],
        ["--repeats", "1", "--size", "512", "--rss-sizes", "1000", "--rss-model", "cheap"],
    ),
}


def run_benchmark(name: str, arguments: List[str], out: str) -> Dict:
    """Run benchmarks/NAME.py in a fresh process; its printed result lines and the load average."""
    script = os.path.join(HERE, f"{SCRIPTS.get(name, name)}.py")
    command = [sys.executable, script, *arguments, "--out", out]
    load_before, start = os.getloadavg(), time.perf_counter()
    process = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)  # stderr: live
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    for line in lines:
        print(line, flush=True)
    return {
        "returncode": process.returncode,
        "lines": lines,
        "seconds": time.perf_counter() - start,
        "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0],
        "command": " ".join([os.path.relpath(command[1], REPO), *command[2:]]),
    }


def summary_rows(name: str, result: Dict, run: Dict) -> List[Dict]:
    """One row per measured quantity of a benchmark's results JSON."""
    load = f"{run['load_average_before']:.1f} → {run['load_average_after']:.1f}"
    if name == "overhead":
        extra = f"{result['train_steps']} steps, {result['overhead_ms_per_step']:+.1f} ms/step"
        if "ratio_cpu_time" in result:
            extra += f", CPU-time ratio {result['ratio_cpu_time']:.3f}"
        if "ratio_of_min" in result:
            extra += f", fastest runs {result['ratio_of_min']:.3f}"
        spreads = [
            f"{who} {min(result[key]['all']):.2f}–{max(result[key]['all']):.2f} s"
            for who, key in (("podium", "podium_train_s"), ("hand", "hand_train_s"))
            if key in result
        ]
        if spreads:
            extra += f"; {result.get('repeats', '?')} runs each: " + ", ".join(spreads)
        if "hand_zero_before_backward" in result:
            early = result["hand_zero_before_backward"]["podium_ratio"]
            extra += f"; vs a loop zeroing grads before backward {early:.3f}"
        extra += f"; {result['torch_threads']} torch threads" if "torch_threads" in result else ""
        if not result["same_batches"]:
            extra += "; batches DIFFERED"
        return [
            _row(
                "overhead",
                "podium / plain PyTorch loop, train steps",
                result["ratio"],
                "<=",
                result["goal"],
                load,
                extra,
                ok=result["ok"],
            )
        ]
    if name == "train_fast":
        spread = result["speedup_of_pairs"]
        return [
            _row(
                "train_fast",
                "hand fp32 loop time / podium time (bf16 + channels_last where native)",
                result["ratio"],
                ">=",
                result["goal"],
                load,
                f"median of {result.get('repeats', '?')} interleaved pairs, "
                f"min–max {spread['min']:.2f}–{spread['max']:.2f}; input "
                f"{result['batch_size']}×{'×'.join(map(str, result['input_shape']))}"
                + ("" if result["same_batches"] else "; batches DIFFERED"),
                ok=result["ok"],
            )
        ]
    if name == "predict_fast":
        return [
            _row(
                "predict_fast",
                "podium predict D4, fp32 time / fast time (bf16 + channels_last where native)",
                result["ratio"],
                ">=",
                result["goal"],
                load,
                f"median of {len(result['fast_s'])} interleaved pairs, min–max "
                f"{result['ratio_min']:.2f}–{result['ratio_max']:.2f}; {result['images']} images "
                f"{'×'.join(map(str, result['input_shape']))}, batch {result['batch_size']}; "
                f"pixels of another class {100 * result['pixels_with_another_class']:.3f} %",
                ok=result["ok"],
            )
        ]
    if name == "loader":
        return [
            _row(
                "loader",
                "loader images/s / model images/s",
                result["ratio"],
                ">=",
                result["goal"],
                load,
                f"{result['num_workers']} workers, batch {result['batch_size']}",
            )
        ]
    if name == "tta":
        goal = (
            result["models"]
            and next(iter(result["models"].values()))["goal"]["podium_d4_max_ratio"]
        )
        return [
            _row(
                f"tta {model}",
                "podium D4 / one forward",
                values["ratios"]["podium_d4"],
                "<=",
                goal,
                load,
                f"input {'×'.join(map(str, result['input_shape']))}",
            )
            for model, values in result["models"].items()
        ]
    if name == "export":  # the torch fast path has no goal: its ratio printed as a ratio too
        return [{**row, "text": f"{row['value']:.3f}×"} for row in _export_rows(result, load)]
    if name == "memory":
        return [
            _row(
                f"memory {command}",
                "peak RSS, MB",
                values["peak_rss_mb"],
                None,
                None,
                load,
                "the floor: import torch, catalyst, podium"
                if command == "import"
                else f"{values['above_import_mb']:+.0f} MB above the import floor",
            )
            for command, values in result["peak_rss"].items()
        ]
    if name == "scenes":
        speedup = result["speedup_podium"]
        rows = [
            _row(
                "scenes speed",
                "MONAI sliding_window_inference time / podium predict --scenes time",
                speedup["median"],
                ">=",
                result["goal"]["speedup"],
                load,
                f"median of {result['repeats']} interleaved pairs, min–max "
                f"{speedup['min']:.2f}–{speedup['max']:.2f}; {result['size']}² scene, resnet18 "
                f"U-Net, window {result['window']}, overlap {result['overlap']}, gaussian, "
                f"--memory-format channels_last; "
                f"default memory format: {result['speedup_podium_default']['median']:.2f}×",
            )
        ]
        for weight, difference in result["max_abs_difference"].items():
            row = _row(
                f"scenes equal {weight}",
                "max abs(podium − MONAI) of the probabilities",
                difference,
                "<=",
                result["goal"]["max_abs_difference"],
                load,
                "same model, window, overlap and blending",
            )
            rows.append({**row, "text": f"{difference:.1e}"})
        for scene, values in result["peak_rss"].items():
            row = _row(
                f"scenes rss {scene}",
                "peak RSS, MB",
                values["peak_rss_mb"],
                "<=",
                result["goal"]["peak_rss_mb"],
                load,
                f"{values['windows']} windows, {values['megapixels_per_second']:.2f} MP/s",
            )
            rows.append({**row, "text": f"{values['peak_rss_mb']:.0f}"})
        return rows
    raise ValueError(f"unknown benchmark {name}")


def _export_rows(result: Dict, load: str) -> List[Dict]:
    rows = [
        _row(
            f"export {case} {method}",
            f"torch eager fp32 / {method} seconds, paired",
            values["ratio_median"][method],
            ">=" if method == "onnxruntime" else None,
            values["goal"]["onnxruntime_min_ratio"] if method == "onnxruntime" else None,
            load,
            f"input {'×'.join(map(str, values['input_shape']))}, "
            f"{values['ratio_min'][method]:.2f}–{values['ratio_max'][method]:.2f}, "
            f"max diff {values['max_abs_difference'][method]:.0e}",
        )
        for case, values in result["cases"].items()
        for method in ("torch_fp32", "onnxruntime", "torch_bf16_cl")
    ]
    for row in rows:  # every row is a ratio, with a goal or not
        row["text"] = f"{row['value']:.3f}×"
    return rows


def _row(name, measures, value, relation, goal, load, note, ok=None) -> Dict:
    if goal is not None and ok is None:
        ok = value <= goal if relation == "<=" else value >= goal
    return {
        "benchmark": name,
        "measures": measures,
        "value": value,
        "goal": None if goal is None else f"{relation} {goal}",
        "ok": ok,
        "load_average": load,
        "note": note,
    }


def markdown(rows: List[Dict], when: str, cores: int, quick: bool = False) -> str:
    lines = [
        f"# Benchmarks ({when}, "
        f"{cores} cores{', --quick: few repeats, smaller inputs' if quick else ''})",
        "",
        "| benchmark | measures | value | goal | result | load avg (1 min) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        value = row.get("text") or (
            f"{row['value']:.0f}" if row["goal"] is None else f"{row['value']:.3f}×"
        )
        result = "—" if row["ok"] is None else ("pass" if row["ok"] else "FAIL")
        goal = row["goal"] or "—"
        lines.append(
            f"| {row['benchmark']} | {row['measures']} | {value} | {goal} | {result} | "
            f"{row['load_average']} | {row['note']} |"
        )
    lines += [
        "",
        f"A load average above {cores} means the machine was shared: timings are noisy, re-run "
        "`make bench` on an idle machine. Details: the JSON file of each benchmark in this folder.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument(
        "--quick", action="store_true", help="few repeats, small inputs: checks the scripts run"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--results", default=RESULTS, help="folder for every JSON and the summary")
    args = parser.parse_args(argv)
    os.makedirs(args.results, exist_ok=True)

    runs, rows, crashed = {}, [], []
    for name in args.only:
        out = os.path.join(args.results, f"{name}.json")
        runs[name] = run_benchmark(name, ARGUMENTS[name][1 if args.quick else 0], out)
        if runs[name]["returncode"] != 0:
            crashed.append(name)
            rows.append(
                _row(
                    name,
                    "crashed",
                    float("nan"),
                    None,
                    None,
                    "",
                    f"exit {runs[name]['returncode']}",
                )
            )
            rows[-1]["ok"] = False
            continue
        with open(out, encoding="utf-8") as handle:
            rows += summary_rows(name, json.load(handle), runs[name])

    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    summary = {
        "when": when,
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "runs": runs,
    }
    with open(os.path.join(args.results, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(args.results, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(rows, when, os.cpu_count(), args.quick))
    failed = [row["benchmark"] for row in rows if row["ok"] is False]
    where = os.path.abspath(os.path.join(args.results, "summary.md"))
    print(
        f"summary: {os.path.relpath(where, REPO) if where.startswith(REPO + os.sep) else where}"
        + (f"   missed or crashed: {', '.join(failed)}" if failed else "   all goals met")
    )
    if crashed or (args.strict and failed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
