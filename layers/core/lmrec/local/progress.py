"""Progress bars for a training job, drawn from the lines it prints.

The job prints one line per epoch (`epoch=3 train_loss=... valid_ndcg@10=...`, students
`student_epoch=...`): the lines SageMaker's metric definitions parse. Each model trains
against a time budget, so its bar runs over that budget and its ETA is the budget left
(a model can stop earlier: patience, epoch limit). On a terminal the bars move; elsewhere
(a log, CI) only the one-line summary of each model is printed.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

EPOCH = re.compile(r"^(?:(?P<phase>[a-z0-9_]+?)_)?epoch=(?P<epoch>\d+)\s")
VALID = re.compile(r"(?:^|[\s_])valid_ndcg@10=(?P<v>[0-9.eE+-]+)")  # valid_, student_valid_
SECONDS = re.compile(r"(?:^|[\s_])epoch_seconds=(?P<s>[0-9.eE+-]+)")
STOPPED = re.compile(r"\b(?P<phase>[a-z0-9_]+): stopping after epoch \d+ \((?P<why>[^)]*)\)")
EVALUATING = "evaluating"  # between a model's last epoch and the next model (or the end)
TABLE = "| model "  # the results table the job prints once everything is evaluated
FORMAT = "{desc}{bar:24} {n:>3.0f}/{total:.0f} s budget, ETA {remaining}{postfix}"


class JobProgress:
    def __init__(self, budgets: dict[str, float], indent: str, say: Callable[[str], None]):
        self.budgets, self.indent, self.say = budgets, indent, say
        self.phase: str | None = None
        self.began = 0.0
        self.epochs, self.best = 0, float("nan")
        self.bar: tqdm | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> JobProgress:
        self.job_began = time.monotonic()
        self._start("teacher", self.job_began)  # from the job's start: data loading included
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        with self._lock:
            self._finish("")
        self.say(f"{self.indent}whole job: {time.monotonic() - self.job_began:.0f} s")

    def line(self, text: str) -> None:
        with self._lock:
            epoch = EPOCH.match(text)
            if epoch:
                self._epoch(epoch.group("phase") or "teacher", int(epoch.group("epoch")), text)
            elif (stopped := STOPPED.search(text)) and stopped.group("phase") == self.phase:
                self._finish(stopped.group("why"))
                self._start(EVALUATING, time.monotonic())  # until the next model or the end
            elif text.startswith(TABLE):
                self._finish("")

    def _epoch(self, phase: str, epoch: int, text: str) -> None:
        if phase != self.phase:
            self._finish("", quiet=self.phase == EVALUATING)
            took = SECONDS.search(text)
            self._start(phase, time.monotonic() - (float(took.group("s")) if took else 0.0))
        self.epochs = epoch
        valid = VALID.search(text)
        if valid:
            value = float(valid.group("v"))
            self.best = value if not self.best >= value else self.best  # nan-safe max
        if self.bar is not None:
            # tqdm puts ", " before the postfix itself
            self.bar.set_postfix_str(f"epoch {epoch}, valid NDCG@10 {self.best:.4f}")

    def _start(self, phase: str, began: float) -> None:
        self.phase, self.began, self.epochs, self.best = phase, began, 0, float("nan")
        budget = self.budgets.get(phase.split("_")[0] if phase.startswith("teacher") else phase)
        self.bar = tqdm(
            total=budget,
            desc=f"{self.indent}{phase:<14}",
            bar_format=FORMAT if budget else "{desc}{elapsed}{postfix}",
            leave=False,
            disable=None,  # None: no bar unless stderr is a terminal
            file=sys.stderr,
        )

    def _finish(self, why: str, quiet: bool = False) -> None:
        if self.phase is None:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        seconds = time.monotonic() - self.began
        if self.phase == EVALUATING:
            if not quiet:
                done = "test split, every model; bundle written"
                self.say(f"{self.indent}{'evaluation':<14} {done}: {seconds:.0f} s")
            self.phase = None
            return
        best = f", best valid NDCG@10 {self.best:.4f}" if self.best == self.best else ""
        reason = f", stopped: {why}" if why else ""
        epochs = f"{self.epochs} epoch{'' if self.epochs == 1 else 's'}"
        self.say(f"{self.indent}{self.phase:<14} {epochs} in {seconds:.0f} s{best}{reason}")
        self.phase = None

    def _tick(self) -> None:
        while not self._done.wait(0.5):
            with self._lock:
                if self.bar is not None and not self.bar.disable:
                    elapsed = time.monotonic() - self.began
                    self.bar.n = min(elapsed, self.bar.total or elapsed)
                    self.bar.refresh()
