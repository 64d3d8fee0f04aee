"""The benchmark scripts run and write valid reports (tiny settings; no timing is asserted)."""

import contextlib
import importlib.util
import io
import json
import statistics
import sys
import textwrap

import pytest
import torch

from conftest import REPO


def _script(name: str):
    """benchmarks/NAME.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overhead_trains_the_same_batches_and_writes_its_report(tmp_path, capsys, monkeypatch):
    overhead = _script("overhead")

    def same_process(
        kind, options, tmp
    ):  # the `--probe` run, here instead of in a new process (speed)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert overhead.main(overhead.probe_argv(kind, options, tmp)) == 0
        return json.loads(printed.getvalue().splitlines()[-1])

    monkeypatch.setattr(overhead, "fresh_process", same_process)
    out = tmp_path / "overhead.json"
    threads = torch.get_num_threads()
    try:
        assert (
            overhead.main(
                [
                    "--epochs",
                    "1",
                    "--batches",
                    "2",
                    "--batch-size",
                    "2",
                    "--repeats",
                    "1",
                    "--threads",
                    "1",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)  # the benchmark sets this process's threads

    result = json.loads(out.read_text())
    assert result["same_batches"] is True  # the hand loop saw podium's batches, in podium's order
    assert result["train_steps"] == 2 and result["batch_size"] == 2
    # same initial weights, batches and loss: the first epoch's mean loss agrees
    losses = result["check_run_epoch_loss"]
    assert losses["podium"] == pytest.approx(losses["hand"], rel=1e-4)
    median = result["podium_train_s"]["median"] / result["hand_train_s"]["median"]
    assert result["ratio"] == pytest.approx(median)
    assert result["ok"] == (result["ratio"] <= result["goal"])
    assert len(result["load_average_1_5_15_before"]) == 3
    assert result["torch_threads"] == 1
    assert set(result["minor_page_faults_per_step"]) == {
        "podium",
        "hand",
        "hand_zero_before_backward",
    }
    assert len(result["podium_train_s"]["all"]) == len(result["hand_train_s"]["all"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"overhead {result['ratio']:.3f}x"


def test_train_fast_runs_podium_fast_against_the_fp32_hand_loop(tmp_path, capsys, monkeypatch):
    overhead = _script("overhead")

    def same_process(kind, options, tmp):
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert overhead.main(overhead.probe_argv(kind, options, tmp)) == 0
        return json.loads(printed.getvalue().splitlines()[-1])

    monkeypatch.setattr(overhead, "fresh_process", same_process)
    out = tmp_path / "train_fast.json"
    threads = torch.get_num_threads()
    argv = ["--epochs", "1", "--batches", "2", "--batch-size", "2", "--repeats", "2"]
    try:
        assert overhead.main([*argv, "--threads", "1", "--fast", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert result["same_batches"] is True
    assert "--engine/precision=auto:str" in result["fast"]["settings"]
    pairs = [h / p for p, h in zip(result["podium_train_s"]["all"], result["hand_train_s"]["all"])]
    spread = result["speedup_of_pairs"]
    assert (spread["min"], spread["max"]) == (min(pairs), max(pairs))
    assert result["ratio"] == pytest.approx(statistics.median(pairs))
    assert result["ok"] == (result["ratio"] >= result["goal"] == 2.0)
    # bf16 (where native) or fp32: the first epoch's mean loss agrees to bf16's precision
    losses = result["check_run_epoch_loss"]
    assert losses["podium"] == pytest.approx(losses["hand"], rel=2e-2)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"train_fast {spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})"


def test_peak_rss_is_the_command_alone(tmp_path):
    """A command that holds 300 MB more than another shows ≈ 300 MB more peak RSS; the memory of
    the process measuring it (here 400 MB more than a small one) and of an earlier, bigger
    command are not counted."""
    import numpy as np

    memory = _script("memory")
    ballast = np.ones(
        400 * 2**20 // 8
    )  # this process: big (Linux would pass it on to a child's ru_maxrss)
    big = memory.peak_rss_mb(
        [sys.executable, "-c", "import numpy; a = numpy.ones(300 * 2**20 // 8)"],
        str(tmp_path / "big.log"),
    )
    small = memory.peak_rss_mb([sys.executable, "-c", "import numpy"], str(tmp_path / "small.log"))
    assert ballast.sum() > 0
    assert big["returncode"] == small["returncode"] == 0
    assert small["peak_rss_mb"] < 100
    assert big["peak_rss_mb"] - small["peak_rss_mb"] == pytest.approx(300, abs=15)
    failed = memory.peak_rss_mb(
        [sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path / "f.log")
    )
    assert failed["returncode"] == 3


def test_export_compares_onnxruntime_and_torch_on_the_same_images(tmp_path, capsys):
    export = _script("export")
    out = tmp_path / "export.json"
    threads = torch.get_num_threads()
    try:
        argv = ["--models", "resnet18", "--cases", "1x64", "--repeats", "2", "--threads", "1"]
        argv += ["--calls", "2", "--pause", "0"]
        assert export.main([*argv, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())["cases"]["resnet18 64"]
    seconds = result["seconds"]
    pairs = [base / t for base, t in zip(seconds["torch_eager"], seconds["onnxruntime"])]
    assert result["ratio_median"]["onnxruntime"] == pytest.approx(statistics.median(pairs))
    assert (result["ratio_min"]["onnxruntime"], result["ratio_max"]["onnxruntime"]) == (
        min(pairs),
        max(pairs),
    )
    over_podium = [t / o for t, o in zip(seconds["torch_fp32"], seconds["onnxruntime"])]
    assert result["onnxruntime_over_podium_torch"]["median"] == pytest.approx(
        statistics.median(over_podium)
    )
    assert result["max_abs_difference"]["onnxruntime"] <= 1e-4  # the same probabilities
    assert result["max_abs_difference"]["torch_fp32"] <= 1e-5  # podium's torch path: same model
    assert result["max_abs_difference"]["torch_eager"] == 0.0
    assert result["goal"]["ok"] == (result["ratio_median"]["onnxruntime"] >= 2.0)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[2].startswith("export resnet18 64 onnxruntime ")
    assert printed[4].startswith("export resnet18 64 onnxruntime_over_podium_torch ")


def _fake_benchmark(folder, name: str, result: dict, line: str) -> None:
    """benchmarks/NAME.py stand-in: writes `result` to --out and prints `line`."""
    (folder / f"{name}.py").write_text(
        textwrap.dedent(f"""
        import json, sys
        out = sys.argv[sys.argv.index("--out") + 1]
        json.dump({result!r}, open(out, "w"))
        print({line!r})
    """)
    )


def test_run_all_summary_puts_each_ratio_beside_its_goal(tmp_path, monkeypatch, capsys):
    run_all = _script("run_all")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    _fake_benchmark(
        scripts,
        "overhead",
        {
            "ratio": 1.05,
            "goal": 1.03,
            "ok": False,
            "same_batches": True,
            "train_steps": 30,
            "overhead_ms_per_step": 7.5,
        },
        "overhead 1.050x",
    )
    _fake_benchmark(
        scripts,
        "loader",
        {"ratio": 3.5, "goal": 2.0, "num_workers": 2, "batch_size": 8},
        "loader 3.5x",
    )
    _fake_benchmark(
        scripts,
        "tta",
        {
            "input_shape": [4, 3, 256, 256],
            "models": {
                "resnet18": {"ratios": {"podium_d4": 7.9}, "goal": {"podium_d4_max_ratio": 8.0}},
                "efficientnet_b0": {
                    "ratios": {"podium_d4": 8.4},
                    "goal": {"podium_d4_max_ratio": 8.0},
                },
            },
        },
        "resnet18 podium_d4 7.9x",
    )
    _fake_benchmark(
        scripts,
        "memory",
        {"peak_rss": {"train": {"peak_rss_mb": 1441.0, "above_import_mb": 311.0}}},
        "memory train 1441 MB",
    )
    (scripts / "crash.py").write_text("raise SystemExit(2)\n")
    monkeypatch.setattr(run_all, "HERE", str(scripts))
    monkeypatch.setitem(run_all.ARGUMENTS, "crash", ([], []))
    monkeypatch.setattr(run_all, "BENCHMARKS", (*run_all.BENCHMARKS, "crash"))
    results = tmp_path / "results"

    assert (
        run_all.main(["--results", str(results), "--only", "overhead", "loader", "tta", "memory"])
        == 0
    )
    printed = capsys.readouterr().out
    for line in (
        "overhead 1.050x",
        "loader 3.5x",
        "resnet18 podium_d4 7.9x",
        "memory train 1441 MB",
    ):
        assert line in printed.splitlines()  # each benchmark's own lines are passed through
    summary = json.loads((results / "summary.json").read_text())
    rows = {row["benchmark"]: row for row in summary["rows"]}
    assert {name: (row["value"], row["goal"], row["ok"]) for name, row in rows.items()} == {
        "overhead": (1.05, "<= 1.03", False),
        "loader": (3.5, ">= 2.0", True),
        "tta resnet18": (7.9, "<= 8.0", True),
        "tta efficientnet_b0": (8.4, "<= 8.0", False),
        "memory train": (1441.0, None, None),
    }
    assert all("→" in row["load_average"] for row in rows.values())
    table = (results / "summary.md").read_text()
    assert (
        "| overhead | podium / plain PyTorch loop, train steps | 1.050× | <= 1.03 | FAIL |" in table
    )
    assert "| memory train | peak RSS, MB | 1441 | — | — |" in table

    # a missed goal fails only with --strict; a crashed benchmark always does
    assert run_all.main(["--results", str(results), "--only", "overhead", "--strict"]) == 1
    assert run_all.main(["--results", str(results), "--only", "loader", "crash"]) == 1
    rows = json.loads((results / "summary.json").read_text())["rows"]
    assert [(row["benchmark"], row["ok"]) for row in rows] == [("loader", True), ("crash", False)]


def test_run_all_rows_of_the_scenes_benchmark():
    run_all = _script("run_all")
    result = {
        "size": 1024,
        "repeats": 5,
        "window": 256,
        "overlap": 64,
        "speedup_podium": {"median": 1.34, "min": 0.96, "max": 2.15},
        "speedup_podium_default": {"median": 1.17},
        "max_abs_difference": {"gaussian": 1.5e-7, "mean": 2e-4},
        "peak_rss": {
            "cheap 5000x5000": {"peak_rss_mb": 1299.0, "windows": 676, "megapixels_per_second": 1},
            "unet 20000x256": {"peak_rss_mb": 2100.0, "windows": 104, "megapixels_per_second": 1},
        },
        "goal": {"speedup": 1.2, "max_abs_difference": 1e-4, "peak_rss_mb": 2048},
    }
    run = {"load_average_before": 1.0, "load_average_after": 1.5}
    rows = run_all.summary_rows("scenes", result, run)
    assert [(r["benchmark"], r["value"], r["goal"], r["ok"]) for r in rows] == [
        ("scenes speed", 1.34, ">= 1.2", True),
        ("scenes equal gaussian", 1.5e-7, "<= 0.0001", True),
        ("scenes equal mean", 2e-4, "<= 0.0001", False),
        ("scenes rss cheap 5000x5000", 1299.0, "<= 2048", True),
        ("scenes rss unet 20000x256", 2100.0, "<= 2048", False),
    ]
    table = run_all.markdown(rows, "now", 2)
    assert (
        "| scenes equal gaussian | max abs(podium − MONAI) of the probabilities | 1.5e-07 |"
        in table
    )
    assert "| scenes rss unet 20000x256 | peak RSS, MB | 2100 | <= 2048 | FAIL |" in table
