"""Which files of a run directory a tracking logger still has to upload.

podium's callbacks write their pictures into the run directory: `OverlayCallback` the overlays
(`overlays/<stage>/epoch_<k>/*.png`, once each), `ProgressPlotCallback` `progress.png`
(redrawn every epoch), `CheckpointCallback` `checkpoints/best.pth`. The loggers upload what
is new or changed since they last looked (size and modification time), so the callbacks need
not know which trackers exist.
"""

from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = ["RunFiles"]


class RunFiles:
    """New or changed files below `logdir` (nothing at all without a logdir)."""

    def __init__(self, logdir: Optional[str]):
        self.root = Path(logdir) if logdir else None
        self._sent: Dict[str, Tuple[int, int]] = {}

    @staticmethod
    def _signature(path: Path) -> Tuple[int, int]:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns

    def changed(self, pattern: str) -> List[Path]:
        """Files matching the glob `pattern` (relative to the logdir) not yet seen as they are
        now, in name order. A file counts as sent once returned (call `forget` on failure)."""
        if self.root is None or not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.glob(pattern)):
            if not path.is_file() or path.name.startswith("."):  # skip atomic-write temp files
                continue
            try:
                signature = self._signature(path)
            except OSError:  # replaced or removed meanwhile
                continue
            key = str(path)
            if self._sent.get(key) != signature:
                self._sent[key] = signature
                found.append(path)
        return found

    def forget(self, path: Path) -> None:
        """Offer `path` again on the next call (its upload failed)."""
        self._sent.pop(str(path), None)

    def relative(self, path: Path) -> str:
        """`path` relative to the logdir, with `/` separators."""
        return path.relative_to(self.root).as_posix()
