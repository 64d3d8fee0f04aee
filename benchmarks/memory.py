"""Peak memory (RSS) of training and of prediction on the demo config, each in a fresh process.

Each command below runs as its own process; its peak resident set size is the kernel's
`ru_maxrss` for that process alone (`os.wait4`, from a small launcher process, so neither this
script's memory nor an earlier command's is counted). In order:

* import   — `python -c "import torch, catalyst.dl, podium.runners, podium.inference"`: the
             floor every podium process starts from;
* train    — `catalyst-dl run --config configs/nuclei/unet_resnet18.yml` on the nuclei sample
             (`podium samples nuclei`, written to a temporary folder), shortened to
             `--train-epochs` epochs per stage (default 1 + 2: the peak is reached in the first
             epoch of each stage; the demo's later epochs repeat the same batches);
* predict_d4 — `podium predict --run RUN --data DATA --split valid --tta d4` on that run
             (the demo's prediction, with D4 test-time augmentation);
* predict_no_tta — the same without TTA, for reference;
* train_fast, predict_d4_fast — train and predict_d4 again with precision and memory format
             `auto` (configs/nuclei/fast.yml; `--precision auto --memory-format auto`): bf16 +
             channels_last where the hardware computes bf16 natively, else the same as above.

Reported per command: peak RSS (MB), peak above the import floor, wall seconds. This is host
memory: on a GPU the activations live in device memory, which RSS does not show.
Results go to benchmarks/results/memory.json (with the load average) and one line per command
is printed: `memory NAME PEAK_MB MB`.

    .venv/bin/python benchmarks/memory.py [--train-epochs 1 2] [--split valid]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CONFIG = os.path.join(REPO, "configs", "nuclei", "unet_resnet18.yml")
FAST_ENGINE = os.path.join(REPO, "configs", "nuclei", "fast.yml")
IMPORTS = "import torch, catalyst.dl, podium.runners, podium.inference"


# Runs the command as its grandchild and writes "<ru_maxrss kB> <exit status>" to argv[1].
# Why the extra process: Linux starts an exec'ed process's ru_maxrss at the high-water mark of
# the memory it replaced — for a child of a big parent (vfork/fork + exec), the parent's RSS.
# This launcher (`python -S`, ~10 MB) is that parent instead.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {code}")
sys.exit(code if 0 <= code < 256 else 1)
"""


def peak_rss_mb(command: Sequence[str], log_path: str, cwd: str = REPO) -> dict:
    """Run `command` to completion; its own peak RSS (MB), wall seconds and exit status.

    Output goes to `log_path` (a file, so a chatty child never blocks on a full pipe).
    """
    result_path = log_path + ".rss"
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, result_path, *command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    seconds = time.perf_counter() - start
    with open(result_path, encoding="ascii") as handle:
        max_rss_kb, returncode = map(int, handle.read().split())
    return {
        "peak_rss_mb": max_rss_kb / 1024,  # ru_maxrss is in kB on Linux
        "seconds": seconds,
        "returncode": returncode,
        "command": " ".join(os.path.relpath(c, REPO) if c.startswith(REPO) else c for c in command),
    }


def commands(tmp: str, config: str, train_epochs: List[int], split: str) -> dict:
    """name → argv, in the order they must run (predict needs the trained run)."""
    data, run = os.path.join(tmp, "nuclei"), os.path.join(tmp, "run")
    stages = _stage_names(config)
    if len(train_epochs) != len(stages):
        raise SystemExit(f"--train-epochs needs one number per stage of {config}: {stages}")
    epochs = [f"--stages/{stage}/num_epochs={n}:int" for stage, n in zip(stages, train_epochs)]
    predict = [
        os.path.join(BIN, "podium"),
        "predict",
        "--run",
        run,
        "--data",
        data,
        "--split",
        split,
        "--no-progress",
    ]

    def train(config_files: List[str], logdir: str) -> List[str]:
        return [
            os.path.join(BIN, "catalyst-dl"),
            "run",
            "--config",
            *config_files,
            f"--args/logdir={logdir}:str",
            f"--data/root={data}:str",
            *epochs,
        ]

    fast = ["--precision", "auto", "--memory-format", "auto"]
    return {
        "import": [sys.executable, "-c", IMPORTS],
        "train": train([config], run),
        "predict_d4": predict + ["--tta", "d4", "--out", os.path.join(tmp, "pred_d4")],
        "predict_no_tta": predict + ["--out", os.path.join(tmp, "pred")],
        "train_fast": train([config, FAST_ENGINE], run + "_fast"),
        "predict_d4_fast": predict + fast + ["--tta", "d4", "--out", os.path.join(tmp, "fast")],
    }


def _stage_names(config: str) -> List[str]:
    import yaml

    with open(config, encoding="utf-8") as handle:
        return list(yaml.safe_load(handle)["stages"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument(
        "--train-epochs", type=int, nargs="+", default=[1, 2], help="epochs of each stage"
    )
    parser.add_argument(
        "--split", default="valid", help="split predicted (default: the demo's valid)"
    )
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "memory.json"))
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                os.path.join(BIN, "podium"),
                "samples",
                "nuclei",
                "--out",
                os.path.join(tmp, "nuclei"),
            ],
            check=True,
            capture_output=True,
        )
        for name, command in commands(tmp, args.config, args.train_epochs, args.split).items():
            log = os.path.join(tmp, f"{name}.log")
            results[name] = peak_rss_mb(command, log)
            print(
                f"  {name}: {results[name]['peak_rss_mb']:.0f} MB "
                f"in {results[name]['seconds']:.1f}s",
                file=sys.stderr,
            )
            if results[name]["returncode"] != 0:
                with open(log, encoding="utf-8") as handle:
                    sys.stderr.write(handle.read()[-3000:])
                raise SystemExit(f"memory: {name} failed (exit {results[name]['returncode']})")
    load_after = os.getloadavg()

    floor = results["import"]["peak_rss_mb"]
    for result in results.values():
        result["above_import_mb"] = result["peak_rss_mb"] - floor
    report = {
        "config": os.path.relpath(args.config, REPO),
        "train_epochs_per_stage": args.train_epochs,
        "predict_split": args.split,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "peak_rss": results,
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(load_after),
        "note": "peak resident set size of each command's "
        "own process (os.wait4 ru_maxrss); host memory only",
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    for name, result in results.items():
        print(f"memory {name} {result['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
