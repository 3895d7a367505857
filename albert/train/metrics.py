"""What a run reports: `metrics.jsonl`, optional TensorBoard scalars and a tqdm bar that honours
`TQDM_DISABLE`."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from albert.errors import AlbertError


class MetricsLog:
    """`metrics.jsonl`: one JSON object per line, flushed as written.

    On resume, lines for steps after the checkpoint are dropped (atomically), so the file
    describes one continuous run with no duplicated steps."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _truncate_after(self, step: int) -> None:
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl` (a torn last line from a crash is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def progress_bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True) -> Any:
    """A tqdm bar (ETA included); silent when disabled, off the main rank, or TQDM_DISABLE=1."""
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, unit="step")


class TensorBoard:
    """Optional TensorBoard scalars (needs the `tensorboard` package)."""

    def __init__(self, log_dir: Path) -> None:
        self.check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    @staticmethod
    def check_available() -> None:
        """Call on every rank before training, so all fail together instead of rank 0 alone."""
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise AlbertError(
                "--tensorboard needs the tensorboard package: `pip install tensorboard` (or drop --tensorboard; "
                "metrics.jsonl and `albert plot` work without it)"
            ) from None

    def write(self, record: dict[str, Any], prefix: str = "train") -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
