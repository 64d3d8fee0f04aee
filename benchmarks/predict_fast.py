"""How much faster is `podium predict` with the fast settings than in fp32, D4 TTA included?

Data: `podium samples voc --tile 256` (real photos, 3×256² tiles) and a run of
configs/voc/unet_resnet18_ce_lovasz.yml trained on them for one epoch (weights do not change
the speed). Then, each in a fresh process, interleaved in pairs (the order alternates):

* fp32 — `podium predict --run RUN --data DATA --tta d4`;
* fast — the same with `--precision auto --memory-format auto` (bf16 + channels_last where the
  hardware computes bf16 natively; `--compile` with `--fast compile`).

Timed: predict's own loop time (`seconds` in its timings.json: first batch to last write, model
loading excluded). `ratio` = fp32 seconds / fast seconds of each pair; the median of the pairs
with their min–max; goal ≥ 1.8. The two predictions are compared too: the share of pixels
whose class differs (bf16 moves probabilities near a decision boundary).
Results: benchmarks/results/predict_fast.json; printed: `predict_fast RATIOx (MIN-MAX)`.

    .venv/bin/python benchmarks/predict_fast.py [--repeats 5] [--tile 256] [--fast compile]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CONFIG = os.path.join(REPO, "configs", "voc", "unet_resnet18_ce_lovasz.yml")
GOAL = 1.8


def run(command, log_path: str) -> None:
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        with open(log_path, encoding="utf-8") as log:
            sys.stderr.write(log.read()[-3000:])
        raise SystemExit(f"predict_fast: {' '.join(map(str, command[:2]))} failed")


def predict_seconds(tmp: str, run_dir: str, data: str, name: str, extra, batch: int) -> float:
    out = os.path.join(tmp, name)
    command = [
        os.path.join(BIN, "podium"),
        "predict",
        "--run",
        run_dir,
        "--data",
        data,
        "--tta",
        "d4",
        "--batch-size",
        str(batch),
        "--no-progress",
        "--out",
        out,
        *extra,
    ]
    run(command, os.path.join(tmp, f"{name}.log"))
    with open(os.path.join(out, "timings.json"), encoding="utf-8") as handle:
        return float(json.load(handle)["seconds"])


def differing_pixels(first: str, second: str) -> float:
    """Share of pixels whose predicted class differs between two mask folders."""
    differ = total = 0
    for name in sorted(os.listdir(first)):
        a = np.asarray(Image.open(os.path.join(first, name)))
        b = np.asarray(Image.open(os.path.join(second, name)))
        differ += int((a != b).sum())
        total += a.size
    return differ / total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pairs")
    parser.add_argument("--tile", type=int, default=256, choices=(128, 256))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--fast", choices=("plain", "compile"), default="plain")
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results", "predict_fast.json")
    )
    options = parser.parse_args(argv)
    fast = ["--precision", "auto", "--memory-format", "auto"]
    fast += ["--compile"] if options.fast == "compile" else []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data, run_dir = os.path.join(tmp, "voc"), os.path.join(tmp, "run")
        podium = os.path.join(BIN, "podium")
        run([podium, "samples", "voc", "--tile", str(options.tile), "--out", data], tmp + "/s.log")
        train = [os.path.join(BIN, "catalyst-dl"), "run", "--config", CONFIG]
        train += [f"--args/logdir={run_dir}:str", f"--data/root={data}:str"]
        run(train + ["--stages/train/num_epochs=1:int"], os.path.join(tmp, "train.log"))
        fp32_s, fast_s = [], []
        for repeat in range(options.repeats):
            order = ("fp32", "fast") if repeat % 2 == 0 else ("fast", "fp32")
            for kind in order:
                seconds = predict_seconds(
                    tmp,
                    run_dir,
                    data,
                    f"{kind}{repeat}",
                    fast if kind == "fast" else [],
                    options.batch_size,
                )
                (fast_s if kind == "fast" else fp32_s).append(seconds)
            print(
                f"  pair {repeat + 1}/{options.repeats}: fp32 {fp32_s[-1]:.2f}s "
                f"fast {fast_s[-1]:.2f}s",
                file=sys.stderr,
            )
        images = len(os.listdir(os.path.join(tmp, "fp320", "masks")))
        changed = differing_pixels(os.path.join(tmp, "fp320", "masks"), tmp + "/fast0/masks")
        with open(os.path.join(tmp, "fast0.log"), encoding="utf-8") as log:
            settings = [line.strip() for line in log if "precision" in line][:1]
    load_after = os.getloadavg()
    pairs = [a / b for a, b in zip(fp32_s, fast_s)]
    ratio = statistics.median(pairs)
    result = {
        "ratio": ratio,
        "ratio_min": min(pairs),
        "ratio_max": max(pairs),
        "goal": GOAL,
        "ok": ratio >= GOAL,
        "fp32_s": fp32_s,
        "fast_s": fast_s,
        "fast_flags": fast,
        "fast_settings_printed": settings,
        "images": images,
        "input_shape": [3, options.tile, options.tile],
        "batch_size": options.batch_size,
        "tta": "d4",
        "pixels_with_another_class": changed,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(load_after),
    }
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(f"predict_fast {ratio:.2f}x ({min(pairs):.2f}-{max(pairs):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
