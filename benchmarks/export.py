"""How much faster is the exported ONNX model in onnxruntime than torch, on the same images?

For U-Nets (podium.models.create_model("unet"), random weights, 3 channels in, 1 class) on
4×3×256² and 1×3×1024² batches, in one process with `--threads` threads each, interleaved (each
repetition times every method, in a rotated order: `--pause` seconds idle, one untimed call, the
median of `--calls` back-to-back calls), after a warm-up run of each:

* torch_eager      — `model(images)` under `torch.inference_mode()`, fp32, contiguous: the
                     "torch eager fp32" of the issue, the unit of every ratio;
* torch_fp32       — podium's `Predictor`, fp32 (`podium predict --run`): TTA's rule hands
                     large forwards to the model in channels_last (tta.py), the weights stay
                     contiguous;
* onnxruntime      — the graph of `podium export` (`constant_scale_resizes`, `SegmentationGraph`,
                     `export_graph`: padding and sigmoid inside) in an onnxruntime CPU session;
* torch_bf16_cl    — podium's fast path, `Predictor(precision="bf16",
                     memory_format="channels_last")` (`podium predict --precision bf16 …`).

Each torch method runs its own copy of the model (a channels_last `Predictor` converts its model
in place). Each repetition gives a paired ratio (torch_eager seconds / method seconds, same
repetition): reported as median with min–max; `onnxruntime_over_podium_torch` is the paired
torch_fp32 / onnxruntime ratio. Equality: the largest |probability| difference of each method from
torch_eager. Goal: onnxruntime ≥ 2.0× torch_eager for every model and size. Results go to
benchmarks/results/export.json (with the load average: run on an idle machine), one line per
model, size and method: `export MODEL SIZE METHOD RATIOx`.

    .venv/bin/python benchmarks/export.py [--models resnet18 efficientnet_b0] [--repeats 5]
"""

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from podium.inference.export import export_graph  # noqa: E402
from podium.inference.export_graph import SegmentationGraph  # noqa: E402
from podium.inference.export_resize import constant_scale_resizes  # noqa: E402
from podium.inference.onnx_metadata import open_session  # noqa: E402
from podium.inference.onnx_predictor import OnnxPredictor  # noqa: E402
from podium.inference.predictor import Predictor  # noqa: E402
from podium.models import create_model  # noqa: E402

GOAL = 2.0
METHODS = ("torch_eager", "torch_fp32", "onnxruntime", "torch_bf16_cl")
UNIT = "torch_eager"
AXES = {"image": {0: "batch", 2: "height", 3: "width"}}


def predictors(model, folder: str, threads: int) -> dict:
    """name → a callable: images → probabilities (torch tensor)."""
    path = os.path.join(folder, "model.onnx")
    example = torch.randn(1, 3, 67, 99)
    graph = SegmentationGraph([constant_scale_resizes(model, example)], [1.0], "sigmoid")
    axes = {**AXES, "probabilities": AXES["image"]}
    export_graph(graph, [example], path, ["image"], ["probabilities"], axes, {})
    cpu = torch.device("cpu")
    # each torch method gets its own copy: a channels_last Predictor converts its model in place,
    # and channels_last weights would make "eager" run in channels_last too
    return {
        "torch_eager": lambda images: torch.sigmoid(model(images)),
        "torch_fp32": Predictor(copy.deepcopy(model), cpu, mode="binary"),
        "onnxruntime": OnnxPredictor(open_session(path, threads=threads), in_channels=3),
        "torch_bf16_cl": Predictor(
            copy.deepcopy(model),
            cpu,
            mode="binary",
            precision="bf16",
            memory_format="channels_last",
        ),
    }


def steady_seconds(run, images, args) -> float:
    """Median seconds of `args.calls` back-to-back calls, after a pause and one untimed call.

    Both runtimes' worker threads spin for a while after a call; timed right after the other
    runtime, a call shares the cores with those spinning threads. The pause lets them sleep, and
    the untimed call wakes this runtime's own pool: what is timed is a run of batches, as
    `podium predict` makes them."""
    time.sleep(args.pause)
    run(images)
    seconds = []
    for _ in range(args.calls):
        start = time.perf_counter()
        run(images)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def time_case(encoder: str, batch: int, size: int, args) -> dict:
    torch.manual_seed(0)
    model = create_model("unet", encoder=encoder, num_classes=1, pretrained=False).eval()
    images = torch.randn(batch, 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        runs = predictors(model, folder, args.threads)
        outputs = {name: run(images) for name, run in runs.items()}  # warm-up, and equality
        times = {name: [] for name in runs}
        for repeat in range(args.repeats):
            order = METHODS[repeat % len(METHODS) :] + METHODS[: repeat % len(METHODS)]
            for name in order:
                times[name].append(steady_seconds(runs[name], images, args))
            print(
                f"  {encoder} {size}² repeat {repeat + 1}/{args.repeats}: "
                + "  ".join(f"{n} {times[n][-1]:.2f}s" for n in METHODS),
                file=sys.stderr,
            )
    paired = {name: [base / t for base, t in zip(times[UNIT], times[name])] for name in METHODS}
    over_podium = [t / o for t, o in zip(times["torch_fp32"], times["onnxruntime"])]
    reference = outputs[UNIT]
    return {
        "input_shape": [batch, 3, size, size],
        "seconds": {name: times[name] for name in METHODS},
        "ratio_median": {name: statistics.median(paired[name]) for name in METHODS},
        "ratio_min": {name: min(paired[name]) for name in METHODS},
        "ratio_max": {name: max(paired[name]) for name in METHODS},
        "onnxruntime_over_podium_torch": {
            "median": statistics.median(over_podium),
            "min": min(over_podium),
            "max": max(over_podium),
        },
        "max_abs_difference": {
            name: float((outputs[name].float() - reference).abs().max()) for name in METHODS
        },
        "goal": {
            "onnxruntime_min_ratio": GOAL,
            "ok": statistics.median(paired["onnxruntime"]) >= GOAL,
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet18", "efficientnet_b0"], help="timm encoder names"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["4x256", "1x1024"],
        help="BATCHxSIZE inputs (default 4x256 1x1024)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per method and repeat")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds idle before each method")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "export.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    results = {}
    with torch.inference_mode():
        for encoder in args.models:
            for case in args.cases:
                batch, size = (int(v) for v in case.split("x"))
                results[f"{encoder} {size}"] = time_case(encoder, batch, size, args)
    load_after = os.getloadavg()
    report = {
        "architecture": "unet",
        "repeats": args.repeats,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "python": platform.python_version(),
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(load_after),
        "calls": args.calls,
        "pause_seconds": args.pause,
        "note": f"paired ratios {UNIT} / method per repetition, interleaved in one process; "
        "with a load average above the core count the machine was shared: re-run when idle",
        "goal": f"onnxruntime >= {GOAL}x {UNIT}",
        "cases": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    for case, result in results.items():
        for name in METHODS:
            print(
                f"export {case} {name} {result['ratio_median'][name]:.2f}x "
                f"({result['ratio_min'][name]:.2f}–{result['ratio_max'][name]:.2f}, "
                f"max diff {result['max_abs_difference'][name]:.1e})"
            )
        spread = result["onnxruntime_over_podium_torch"]
        print(
            f"export {case} onnxruntime_over_podium_torch {spread['median']:.2f}x "
            f"({spread['min']:.2f}–{spread['max']:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
