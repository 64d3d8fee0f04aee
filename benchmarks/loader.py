"""Is the data loader fast enough to keep the model busy?

Measures, in one process and interleaved (loader, model, loader, model, …):

* loader: images/s of the train loader of a config (its `data:` block through
  podium.datasets.build_segmentation_datasets, its batch size, `--workers` DataLoader workers,
  podium's seeded worker_init_fn), iterating full epochs after a warm-up epoch
  (persistent workers, so process start-up is not counted);
* model: images/s of a training step (forward + backward + AdamW step, BCE loss) of the
  config's model at the config's batch size, on real batches from that loader.

Medians over `--repeats`; goal: loader ≥ 2× model. Results go to benchmarks/results/loader.json
and one line `loader RATIOx` is printed.

    .venv/bin/python benchmarks/loader.py [--config configs/nuclei/unet_resnet18.yml] [--repeats 5]

The data is the nuclei sample written to a temporary folder (podium.datasets.samples).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from podium.datasets import build_segmentation_datasets  # noqa: E402
from podium.datasets.samples import write_sample  # noqa: E402
from podium.datasets.transforms import worker_init_fn  # noqa: E402
from podium.models import create_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=os.path.join(REPO, "configs", "nuclei", "unet_resnet18.yml")
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--model-steps", type=int, default=4, help="training steps per model measurement"
    )
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "loader.json"))
    args = parser.parse_args(argv)

    with open(args.config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    stage = next(iter(config["stages"].values()))
    batch_size = int(stage["loaders"]["batch_size"])
    model_params = {k: v for k, v in config["model"].items() if k != "_target_"}

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "nuclei")
        write_sample("nuclei", root)
        data = dict(config["data"], root=root)
        train = build_segmentation_datasets(**data)["train"]
        generator = torch.Generator().manual_seed(int(config.get("args", {}).get("seed", 42)))
        loader = torch.utils.data.DataLoader(
            train,
            batch_size=batch_size,
            shuffle=True,
            num_workers=args.workers,
            drop_last=True,
            worker_init_fn=worker_init_fn,
            generator=generator,
            persistent_workers=args.workers > 0,
        )
        batches = [
            batch for _, batch in zip(range(args.model_steps), loader)
        ]  # warm-up epoch (workers start)
        for _ in loader:
            pass
        model = create_model(**model_params).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        criterion = torch.nn.BCEWithLogitsLoss()
        _train_step(model, optimizer, criterion, batches[0])  # warm-up (allocations, cudnn/oneDNN)

        loader_rates, model_rates = [], []
        for _ in range(args.repeats):
            loader_rates.append(_loader_rate(loader))
            model_rates.append(_model_rate(model, optimizer, criterion, batches))
            print(
                f"  loader {loader_rates[-1]:7.1f} img/s   model {model_rates[-1]:6.1f} img/s",
                file=sys.stderr,
            )

    loader_median, model_median = statistics.median(loader_rates), statistics.median(model_rates)
    ratio = loader_median / model_median
    result = {
        "config": os.path.relpath(args.config, REPO),
        "batch_size": batch_size,
        "num_workers": args.workers,
        "input_shape": list(batches[0]["image"].shape[1:]),
        "train_images": len(train),
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loader_images_per_s": {"median": loader_median, "all": loader_rates},
        "model_images_per_s": {"median": model_median, "all": model_rates},
        "ratio": ratio,
        "goal": 2.0,
        "ok": ratio >= 2.0,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(f"loader {ratio:.1f}x")
    return 0


def _loader_rate(loader) -> float:
    """Images/s of one full epoch (persistent workers: no start-up in the timing)."""
    start, images = time.perf_counter(), 0
    for batch in loader:
        images += batch["image"].shape[0]
    return images / (time.perf_counter() - start)


def _train_step(model, optimizer, criterion, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = criterion(model(batch["image"]), batch["mask"])
    loss.backward()
    optimizer.step()


def _model_rate(model, optimizer, criterion, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        _train_step(model, optimizer, criterion, batch)
    return sum(b["image"].shape[0] for b in batches) / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(main())
