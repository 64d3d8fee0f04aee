"""Whole-scene prediction (`podium predict --scenes`): throughput against MONAI's
`sliding_window_inference`, equality of the blending, and peak memory as the scene grows.

* throughput — the same model (a resnet18 U-Net, random weights, eval), window (256),
  overlap (64 px = MONAI's 0.25), gaussian blending (sigma 0.125) and batch of windows (4) on
  a `--size`² 3-band uint8 GeoTIFF, end to end in both: read the raster, normalise, predict,
  blend, write a uint8 probability GeoTIFF and a 0/1 mask GeoTIFF (tiled, deflate). podium:
  `ScenePredictor` with a `Predictor` (TTA "none": one view, channels_last where its rule says
  so) and `--memory-format channels_last` (model and windows in the CPU's fast layout),
  streaming row strips; MONAI: the raster read whole, `sliding_window_inference` on it, the two
  GeoTIFFs written whole. Runs are paired and interleaved (the order alternates); the result is
  the median of the pairs' MONAI / podium time ratios, with their min–max. Also reported:
  `podium_default`, podium's default memory format (contiguous model; TTA's rule puts the
  windows in channels_last), so the part of the speed that is the memory format is visible.
* equality — podium's float probabilities (before the uint8 quantisation of the file) against
  MONAI's output with the same blending: gaussian, and mean (MONAI's "constant").
* peak RSS — `ScenePredictor` on `--rss-sizes` square scenes (default 5000, 10000, 20000;
  20000² × 3 uint8 is 1.2 GB of raster, written once into a temp folder, deflate, and deleted),
  each in a fresh process (memory.py's launcher: the process's own ru_maxrss), with the resnet18
  U-Net (`--rss-model cheap`: two 3×3 convolutions, same interface, for a quick look): memory
  beyond the model depends on the window, the batch and the scene's width, not its area.

Results go to benchmarks/results/scenes.json (with the load average: timings are only
meaningful on an idle machine) and these lines are printed:
`scenes speedup 1.227x`, `scenes equal gaussian 1.8e-07`, `scenes rss unet 5000 1389 MB (28 s)`.

    .venv/bin/python benchmarks/scenes.py [--repeats 5] [--size 1024] [--rss-sizes 5000 10000]

MONAI is needed for this benchmark only: `pip install --no-deps monai==1.6.1`
(docs/scenes.md); it is not in requirements.txt.
"""

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(REPO, "benchmarks")
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

GOAL_SPEEDUP = 1.2
GOAL_EQUAL = 1e-4
GOAL_RSS_MB = 2048
WINDOW, OVERLAP, BATCH = 256, 64, 4


# ----------------------------------------------------------------------------- scenes and models
def write_scene(path: str, height: int, width: int, seed: int = 0, rows: int = 1024) -> str:
    """A tiled deflate 3-band uint8 GeoTIFF (UTM 17N, 0.5 m), written in strips of rows."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32617",
        transform=from_origin(404000.0, 3285000.0, 0.5, 0.5),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    cols = np.arange(width)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, height, rows):
            n = min(rows, height - top)
            r = np.arange(top, top + n)[:, None]
            base = 128 + 60 * np.sin(r / 37.0) * np.cos(cols[None] / 53.0)
            strip = np.stack([base + 20 * c for c in range(3)])
            strip += rng.normal(0, 8, strip.shape)
            dst.write(np.clip(strip, 0, 255).astype(np.uint8), window=Window(0, top, width, n))
    return path


def unet():
    from podium.models import build_segmentation_model

    return build_segmentation_model("unet", "resnet18", 3, 1, pretrained=False).eval()


def cheap_model():
    """Two 3×3 convolutions: the interface of a segmentation model at a fraction of its cost."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1)
    ).eval()


def scene_predictor(model, weight="gaussian", memory_format="channels_last", batch=BATCH):
    """`podium predict --scenes` with --memory-format (channels_last: the CPU's fast layout)."""
    from podium.datasets.normalize import build_normalizer
    from podium.inference.postprocess import PostProcess
    from podium.inference.predictor import Predictor
    from podium.inference.scenes import ScenePredictor
    from podium.inference.tta import build_tta

    model = copy.deepcopy(model)  # Predictor converts its model in place: MONAI keeps its own
    return ScenePredictor(
        Predictor(model, tta=build_tta("none"), mode="binary", memory_format=memory_format),
        window=WINDOW,
        overlap=OVERLAP,
        weight=weight,
        batch_size=batch,
        normalizer=build_normalizer({"mode": "fixed", "max_value": 255}),
        post=PostProcess(threshold=0.5),
    )


# ----------------------------------------------------------------------------- the two paths
def podium_seconds(predictor, scene: str, out: str) -> float:
    start = time.perf_counter()
    predictor(scene, out)
    return time.perf_counter() - start


def monai_probabilities(model, image, mode: str):
    """MONAI's sliding_window_inference of sigmoid(model) over a 1×C×H×W float tensor."""
    import torch
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        return sliding_window_inference(
            image,
            (WINDOW, WINDOW),
            BATCH,
            lambda batch: torch.sigmoid(model(batch)),
            overlap=OVERLAP / WINDOW,
            mode=mode,
            sigma_scale=0.125,
        )[0]


def monai_seconds(model, scene: str, out: str) -> float:
    """Read whole, MONAI, write the probability and mask GeoTIFFs whole (same profile)."""
    import rasterio
    import torch

    start = time.perf_counter()
    with rasterio.open(scene) as src:
        image = torch.from_numpy(src.read().astype(np.float32) / 255)[None]
        profile = dict(
            driver="GTiff",
            width=src.width,
            height=src.height,
            count=1,
            dtype="uint8",
            crs=src.crs,
            transform=src.transform,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            predictor=2,
        )
    probability = monai_probabilities(model, image, "gaussian")[0].numpy()
    os.makedirs(out, exist_ok=True)
    with rasterio.open(os.path.join(out, "probability.tif"), "w", **profile) as dst:
        dst.write(np.rint(np.clip(probability, 0, 1) * 255).astype(np.uint8), 1)
    with rasterio.open(os.path.join(out, "mask.tif"), "w", **profile) as dst:
        dst.write((probability > 0.5).astype(np.uint8), 1)
    return time.perf_counter() - start


def equality(model, scene: str) -> Dict[str, float]:
    """Max |podium − MONAI| of the float probabilities, per blending both offer."""
    import rasterio
    import torch

    with rasterio.open(scene) as src:
        image = torch.from_numpy(src.read().astype(np.float32) / 255)[None]
        result = {}
        for weight, mode in (("gaussian", "gaussian"), ("mean", "constant")):
            rows = scene_predictor(model, weight).blended_rows(src, [1, 2, 3])
            ours = np.concatenate([p for _, p, _, _ in rows], axis=1)
            theirs = monai_probabilities(model, image, mode).numpy()
            result[weight] = float(np.abs(ours - theirs).max())
    return result


# ----------------------------------------------------------------------------- memory
def child(argv: List[str]) -> int:
    """`--child SCENE MODEL OUT`: predict one scene, print seconds and megapixels/s."""
    scene, which, out = argv
    model = unet() if which == "unet" else cheap_model()
    summary = scene_predictor(model)(scene, out)
    print(json.dumps({k: summary[k] for k in ("seconds", "megapixels_per_second", "windows")}))
    return 0


def peak_rss(scene: str, which: str, tmp: str) -> Dict:
    from memory import peak_rss_mb

    out = os.path.join(tmp, f"out_{which}")
    log = os.path.join(tmp, f"rss_{which}.log")
    command = [sys.executable, os.path.abspath(__file__), "--child", scene, which, out]
    result = peak_rss_mb(command, log)
    with open(log, encoding="utf-8") as handle:
        lines = handle.read().strip().splitlines()
    if result["returncode"] != 0:
        raise SystemExit(f"scenes: the {which} child failed:\n" + "\n".join(lines[-20:]))
    result.update(json.loads(lines[-1]))
    shutil.rmtree(out, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- main
def throughput(args, tmp: str) -> Dict:
    """Equality and paired timings against MONAI on a --size² scene."""
    import monai

    report: Dict = {"monai": monai.__version__, "size": args.size, "repeats": args.repeats}
    scene = write_scene(os.path.join(tmp, "scene.tif"), args.size, args.size)
    model = unet()
    report["max_abs_difference"] = equality(model, scene)
    for weight, difference in report["max_abs_difference"].items():
        print(f"scenes equal {weight} {difference:.1e}", flush=True)
    podium_fast = scene_predictor(model)
    podium_default = scene_predictor(model, memory_format="contiguous")
    monai_seconds(model, scene, os.path.join(tmp, "warm"))  # one warm-up of each
    podium_seconds(podium_fast, scene, os.path.join(tmp, "warm"))
    times: Dict[str, List[float]] = {"podium": [], "podium_default": [], "monai": []}
    for repeat in range(args.repeats):
        runs = [
            ("podium", lambda o: podium_seconds(podium_fast, scene, o)),
            ("podium_default", lambda o: podium_seconds(podium_default, scene, o)),
            ("monai", lambda o: monai_seconds(model, scene, o)),
        ]
        for name, run in runs if repeat % 2 == 0 else runs[::-1]:
            times[name].append(run(os.path.join(tmp, name)))
        print(
            f"  pair {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
            file=sys.stderr,
            flush=True,
        )
    for name in ("podium", "podium_default"):
        ratios = [m / p for m, p in zip(times["monai"], times[name])]
        report[f"speedup_{name}"] = {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "all": ratios,
        }
    report["seconds"] = times
    report["megapixels_per_second"] = {
        name: args.size**2 / 1e6 / statistics.median(values) for name, values in times.items()
    }
    spread = report["speedup_podium"]
    print(
        f"scenes speedup {spread['median']:.3f}x (min {spread['min']:.3f}, max {spread['max']:.3f})"
    )
    return report


def memory(args, tmp: str) -> Dict:
    """Peak RSS of fresh processes predicting ever larger scenes."""
    from memory import peak_rss_mb

    floor = peak_rss_mb(
        [sys.executable, "-c", "import torch, podium.inference.scenes"],
        os.path.join(tmp, "import.log"),
    )["peak_rss_mb"]
    rss: Dict[str, Dict] = {}
    for size in args.rss_sizes:
        path = write_scene(os.path.join(tmp, f"rss_{size}.tif"), size, size, seed=size)
        key = f"{args.rss_model} {size}x{size}"
        rss[key] = peak_rss(path, args.rss_model, tmp)
        os.unlink(path)
        print(
            f"scenes rss {args.rss_model} {size} {rss[key]['peak_rss_mb']:.0f} MB "
            f"({rss[key]['seconds']:.0f} s)",
            flush=True,
        )
    for values in rss.values():
        values["above_import_mb"] = values["peak_rss_mb"] - floor
    return {"import_floor_rss_mb": floor, "peak_rss": rss}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="paired runs (default 5)")
    parser.add_argument("--size", type=int, default=1024, help="throughput scene side (px)")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[5000, 10000, 20000])
    parser.add_argument(
        "--rss-model",
        choices=("unet", "cheap"),
        default="unet",
        help="model of the peak-RSS runs (cheap: two convolutions, for a quick look)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("throughput", "memory"),
        default=["throughput", "memory"],
        help="what to measure; the other part's results are kept from --out if it exists",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "scenes.json"))
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report: Dict = {}
    report.update(
        {
            "window": WINDOW,
            "overlap": OVERLAP,
            "batch_windows": BATCH,
            "weight": "gaussian (sigma_scale 0.125)",
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
    )
    with tempfile.TemporaryDirectory(prefix="podium_scenes_") as tmp:
        for part, measure in (("throughput", throughput), ("memory", memory)):
            if part in args.parts:
                load_before = os.getloadavg()
                report.update(measure(args, tmp))
                report[f"load_average_1_5_15_{part}"] = [list(load_before), list(os.getloadavg())]
    if set(args.parts) != {"throughput", "memory"} and os.path.isfile(args.out):
        with open(args.out, encoding="utf-8") as handle:  # read now: a run of the other part
            report = {**json.load(handle), **report}  # may have finished meanwhile
    report["goal"] = {
        "speedup": GOAL_SPEEDUP,
        "max_abs_difference": GOAL_EQUAL,
        "peak_rss_mb": GOAL_RSS_MB,
    }
    report["ok"] = {
        "speedup": "speedup_podium" in report
        and report["speedup_podium"]["median"] >= GOAL_SPEEDUP,
        "equal": max(report.get("max_abs_difference", {"-": 1.0}).values()) <= GOAL_EQUAL,
        "peak_rss": bool(report.get("peak_rss"))
        and max(r["peak_rss_mb"] for r in report["peak_rss"].values()) <= GOAL_RSS_MB,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
