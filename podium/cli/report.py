"""`podium report RUN_DIR [--out report.html]`: one static HTML page about a run.

The resolved config, curves per metric (train vs valid), per-class metrics of the best epoch,
the best / worst overlays, prediction metrics, timings; for a `podium cv` directory also the
fold table and every fold's curves. Images are embedded: the file can be moved or mailed alone.
See podium/report/build.py.
"""

import argparse
import sys

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a catalyst-dl run logdir, or a podium cv directory"
    )
    parser.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    parser.add_argument(
        "--num-overlays",
        type=int,
        default=4,
        metavar="N",
        help="best and worst overlays to show, N of each (default 4)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from podium.report import write_report

    out, notes = write_report(args.run_dir, args.out, args.num_overlays)
    for note in notes:
        print(f"podium: warning: {note}", file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0
