"""Metric writers: TensorBoard events (tensorboardX, no TensorFlow), a readable text log, and a
JSON-lines history the loss-curve plot is drawn from. Only process 0 writes."""

import json
import os
import time

import jax
from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes scalar metrics to `<workdir>/tensorboard`, `train_log.txt` and `history.jsonl`.

    On resume from `start_step`, history lines past `start_step` (written by a run that died
    after its last checkpoint) are dropped so the curve has one value per step.
    """

    def __init__(self, workdir: str, start_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.history_path = os.path.join(workdir, "history.jsonl")
        self.log_path = os.path.join(workdir, "train_log.txt")
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._truncate_history(start_step)
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self.log = open(self.log_path, "a")  # noqa: SIM115  (closed in close())
        self.history = open(self.history_path, "a")  # noqa: SIM115

    def _truncate_history(self, start_step: int) -> None:
        if not os.path.exists(self.history_path):
            return
        with open(self.history_path) as f:
            kept = [line for line in f if json.loads(line)["step"] <= start_step]
        with open(self.history_path, "w") as f:
            f.writelines(kept)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in metrics.items():
            self.tb.add_scalar(name, value, step)
        self.tb.flush()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        items = "  ".join(f"{k}={v:.5g}" for k, v in sorted(metrics.items()))
        self.log.write(f"{stamp}  step {step}  {items}\n")
        self.log.flush()
        self.history.write(json.dumps({"step": step, **metrics}) + "\n")
        self.history.flush()

    def text(self, message: str) -> None:
        """Appends a free-form line (start, resume, end of run) to the text log."""
        if self.enabled:
            self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")
            self.log.flush()

    def close(self) -> None:
        if self.enabled:
            self.tb.close()
            self.log.close()
            self.history.close()


def read_history(workdir: str) -> list[dict]:
    """The logged metrics of a run, one dict per logged step."""
    path = os.path.join(workdir, "history.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]
