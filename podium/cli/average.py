"""`podium average`: one checkpoint averaging the k best epochs of a run (SWA / weight soup).

    podium average --run logs/nuclei --top-k 5 --bn-update          # → checkpoints/average.pth
    podium average --checkpoints logs/a/checkpoints/train.7.pth logs/a/checkpoints/train.9.pth \\
        --out logs/a/checkpoints/soup.pth
    podium predict --run logs/nuclei --checkpoint average            # like best / last

--top-k ranks the epoch checkpoints the run's last stage kept (`save_n_best` of its
CheckpointCallback) by the score that selected them. --bn-update recomputes the BatchNorm
statistics on the run's train loader (torch.optim.swa_utils.update_bn). The result holds
`model_state_dict` (and `averaged_from`): predict, submit (`--checkpoint average`) and
`init_from:` take it like any checkpoint. No file of the run is changed.
"""

import argparse
from pathlib import Path
from typing import Any, Dict

from podium.errors import PodiumError
from podium.validation import check_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "average",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, help="run directory of catalyst-dl run")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--top-k", type=int, help="the k best kept epoch checkpoints of --run")
    which.add_argument(
        "--checkpoints", nargs="+", type=Path, metavar="PTH", help="these checkpoint files"
    )
    parser.add_argument(
        "--bn-update",
        action="store_true",
        help="recompute BatchNorm statistics on the run's train loader (update_bn)",
    )
    parser.add_argument(
        "--ema",
        action="store_true",
        help="average the checkpoints' EMA weights (default: their trained weights)",
    )
    parser.add_argument(
        "--out", type=Path, help="output file (default RUN/checkpoints/average.pth)"
    )
    parser.add_argument("--device", help="cpu | cuda | cuda:1 (default: auto)")
    parser.set_defaults(func=run)


def train_loader(run_config: Dict[str, Any]):
    """The train loader of the run's last stage (its dataset, batch size and augmentations)."""
    from torch.utils.data import DataLoader

    from podium.runners.data import StageData

    stage = list(run_config["stages"])[-1]
    datasets = StageData(run_config, [stage]).get(stage) or {}
    names = [name for name in datasets if str(name).startswith("train")]
    if not names:
        raise PodiumError(
            f"--bn-update needs the run's train data: stage {stage} of its config has no "
            f"train dataset in data: (found: {', '.join(map(str, datasets)) or 'none'})"
        )
    loaders = run_config["stages"][stage].get("loaders") or {}
    return DataLoader(
        datasets[names[0]],
        batch_size=int(loaders.get("batch_size", 8)),
        shuffle=True,
        num_workers=int(loaders.get("num_workers", 0)),
    )


def run(args) -> int:
    from podium.inference import averaging
    from podium.inference.checkpoint import load_run_config
    from podium.inference.pipeline import resolve_device
    from podium.inference.sharding import Shards
    from podium.targets import call_target

    if args.top_k is not None:
        if args.run is None:
            raise PodiumError("--top-k needs --run RUN_DIR (the run whose checkpoints to average)")
        check_int(args.top_k, "--top-k", 1)
        paths = averaging.top_k(args.run, args.top_k)
    else:
        paths = list(args.checkpoints)
        for path in paths:
            if not path.is_file():
                raise PodiumError(f"--checkpoints: {path} does not exist")
    run_dir = args.run or averaging.run_of(paths[0])
    if run_dir is None:
        raise PodiumError(
            f"--run RUN_DIR is needed: {paths[0]} is not inside a run directory, and the run's "
            f"config says which model the weights belong to"
        )
    config = load_run_config(run_dir)
    device = resolve_device(args.device, Shards())
    model = call_target(config.get("model"), "model").to(device)
    weights = averaging.average_weights(model, paths, ema=args.ema)
    if args.bn_update:
        model.load_state_dict(weights)
        input_key = (config.get("runner") or {}).get("input_key", "image")
        averaging.update_batchnorm(model, train_loader(config), input_key, device)
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        weights = {k: v.cpu() for k, v in weights.items()}
    out = args.out or Path(run_dir) / "checkpoints" / "average.pth"
    averaging.write_average(out, weights, paths, args.bn_update)
    names = ", ".join(p.name for p in paths)
    print(f"averaged {len(paths)} checkpoints ({names}) → {out}")
    return 0
