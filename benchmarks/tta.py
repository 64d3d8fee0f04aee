"""What does D4 test-time augmentation cost, in forwards of the same model?

For U-Nets (podium.models.create_model("unet"), random weights) on a B×3×H×W batch
(default 4×3×256×256), in one process, interleaved (each repetition runs every method once,
in a rotated order), after a warm-up run of each:

* single            — one forward `model(x)`: the unit of every ratio;
* podium_d4         — `podium.inference.tta.build_tta("d4")(model, x)` with its defaults
                      (on CPU: one view per forward, views in channels_last);
* toolbelt_d4       — pytorch-toolbelt's `d4_image2mask(model, x)` (the 8 views in one batch);
* sequential_d4     — toolbelt's 8 views run one at a time (NCHW), de-augmented by toolbelt;
* single_channels_last — one forward on the channels_last input: shows how much of podium's
                      gain is the memory format (podium_d4 / this ≈ 8 means no other trick).

Medians over `--repeats`; ratios = median / median of `single`. Goal: podium_d4 ≤ 8.0×.
Peak memory: each method also runs once in a fresh process (skip with `--no-memory`), and the
peak RSS during the run above the RSS just before it is reported (≈ activation memory).
Results go to benchmarks/results/tta.json (with the load average: the numbers are only
meaningful on an otherwise idle machine) and one line per model and method is printed:
`MODEL METHOD RATIOx`.

    .venv/bin/python benchmarks/tta.py [--models resnet18 efficientnet_b0] [--repeats 5] [--no-memory]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pytorch_toolbelt.inference import tta as toolbelt  # noqa: E402

from podium.inference.tta import build_tta  # noqa: E402
from podium.models import create_model  # noqa: E402

GOAL = 8.0
METHODS = ("single", "podium_d4", "toolbelt_d4", "sequential_d4", "single_channels_last")


def methods(model, images):
    """name → a callable running that method once on `images`."""
    podium_d4 = build_tta("d4")
    channels_last = images.contiguous(memory_format=torch.channels_last)

    def sequential_d4():
        views = torch.chunk(toolbelt.d4_image_augment(images), 8)
        return toolbelt.d4_image_deaugment(torch.cat([model(view) for view in views]))

    return {
        "single": lambda: model(images),
        "podium_d4": lambda: podium_d4(model, images),
        "toolbelt_d4": lambda: toolbelt.d4_image2mask(model, images),
        "sequential_d4": sequential_d4,
        "single_channels_last": lambda: model(channels_last),
    }


def setup(encoder: str, batch: int, size: int, threads: int):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("unet", encoder=encoder, num_classes=1, pretrained=False).eval()
    images = torch.randn(batch, 3, size, size)
    return model, images


def time_model(encoder: str, args) -> dict:
    model, images = setup(encoder, args.batch, args.size, args.threads)
    runs = methods(model, images)
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():  # warm-up: oneDNN primitives, allocator
            run()
        names = list(runs)
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
            print(
                f"  {encoder} repeat {repeat + 1}/{args.repeats}: "
                + "  ".join(f"{n} {times[n][-1]:.2f}s" for n in names),
                file=sys.stderr,
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: medians[name] / medians["single"] for name in names}
    fastest = {name: min(values) for name, values in times.items()}
    return {
        "seconds": {
            name: {"median": medians[name], "min": fastest[name], "all": times[name]}
            for name in names
        },
        "ratios": ratios,
        "ratios_of_min": {
            name: fastest[name] / fastest["single"] for name in names
        },  # least disturbed runs
        "podium_d4_vs_single_channels_last": medians["podium_d4"] / medians["single_channels_last"],
        "goal": {"podium_d4_max_ratio": GOAL, "ok": ratios["podium_d4"] <= GOAL},
    }


def peak_memory(encoder: str, args) -> dict:
    """Peak RSS (MB) during one run of each method in a fresh process, above the RSS before it."""
    peaks = {}
    for method in ("single", "podium_d4", "toolbelt_d4", "sequential_d4"):
        out = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--probe",
                encoder,
                method,
                "--batch",
                str(args.batch),
                "--size",
                str(args.size),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[method] = float(out.stdout.strip().splitlines()[-1])
    return peaks


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def probe(encoder: str, method: str, args) -> None:
    """Print the peak RSS (MB) of one run of `method` above the RSS before it (Linux)."""
    model, images = setup(encoder, args.batch, args.size, args.threads)
    run = methods(model, images)[method]
    with torch.inference_mode():
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # reset the peak (VmHWM) to the current RSS
        before = _status_mb("VmRSS")
        run()
        print(_status_mb("VmHWM") - before)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet18", "efficientnet_b0"], help="timm encoder names"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs"
    )
    parser.add_argument("--probe", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "tta.json"))
    args = parser.parse_args(argv)
    if args.probe:
        probe(*args.probe, args)
        return 0

    load_before = os.getloadavg()
    results = {}
    for encoder in args.models:
        results[encoder] = time_model(encoder, args)
        if args.memory:
            results[encoder]["peak_activation_mb"] = peak_memory(encoder, args)
    load_after = os.getloadavg()

    report = {
        "input_shape": [args.batch, 3, args.size, args.size],
        "architecture": "unet",
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(load_after),
        "note": "ratios are medians of interleaved runs in one process; with a load average above the "
        "core count the machine was shared and the numbers are noisy: re-run on an idle machine",
        "goal": f"podium_d4 <= {GOAL}x one forward",
        "models": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    for encoder, result in results.items():
        for name in METHODS:
            print(f"{encoder} {name} {result['ratios'][name]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
