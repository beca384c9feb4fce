"""One replica: a scheduler and a pipeline of stages priced by a ReplicaCost.

Pipeline parallelism keeps up to pp micro-batches in flight. A micro-batch enters stage 0 when it is free,
passes stage 0..pp-1 with `send_time` between stages, and each stage runs one micro-batch at a time in
arrival order, so the whole path is known when the batch is scheduled. Throughput is set by the slowest
stage; unbalanced stages leave the others idle (bubbles). With pp = 1 this is one batch at a time.
Each stage prices an iteration once, fused (`StageCost.price` / `price_decode`: time, energy and FLOPs).
"""

from __future__ import annotations

from simulator.costmodel.interface import ReplicaCost
from simulator.engine.schedulers import Batch, Scheduler


class Replica:
    def __init__(self, index: int, role: str, scheduler: Scheduler, cost: ReplicaCost):
        self.index = index
        self.role = role
        self.scheduler = scheduler
        self.cost = cost
        self.stages = list(cost.stages)
        self.pp = len(self.stages)
        self.stage_free_s = [0.0] * self.pp
        self.stage_busy_s = [0.0] * self.pp
        self.num_in_flight = 0
        self.wake_pending = False
        self.energy_j = 0.0
        self.flops = 0.0
        self.num_iterations = 0
        self.trace = None  # a trace.TraceRecorder, only while `apex simulate --trace-out` records

    def start_batches(self, now_s: float) -> tuple[list[tuple[float, Batch]], float | None]:
        """Schedule micro-batches while the pipeline has room and stage 0 is free. Returns the (done time,
        batch) pairs started, and when to look again if stage 0 is busy but work remains (else None)."""
        started = []
        while self.num_in_flight < self.pp:
            if self.stage_free_s[0] > now_s:
                return started, self.stage_free_s[0] if self.scheduler.has_work() else None
            self.scheduler.now_s = now_s
            batch = self.scheduler.schedule(now_s)
            if batch is None:
                break
            started.append((self.start(batch, now_s), batch))
        return started, None

    def start(self, batch: Batch, now_s: float) -> float:
        """Send a scheduled micro-batch into the pipeline at now_s (stage 0 is free); returns when it leaves."""
        self.num_in_flight += 1
        if self.trace is None:
            return self._run_stages(batch, now_s)
        spans: list[tuple[float, float]] = []
        done_s = self._run_stages(batch, now_s, spans)
        self.trace.iteration(self, batch, now_s, spans)
        return done_s

    def _run_stages(self, batch: Batch, now_s: float, spans: list | None = None) -> float:
        """Price the batch on each stage in turn; returns when it leaves the last one. `spans` (tracing only)
        receives each stage's (start, end)."""
        shape = batch.shape
        free, busy = self.stage_free_s, self.stage_busy_s
        t = now_s
        last = self.pp - 1
        for i, stage in enumerate(self.stages):
            if shape is None:
                time_s, energy_j, flops = stage.price_decode(batch.num_decode, batch.decode_context_tokens)
            else:
                time_s, energy_j, flops = stage.price(shape)
            start = t if t > free[i] else free[i]
            t = start + time_s
            free[i] = t
            busy[i] += time_s
            if spans is not None:
                spans.append((start, t))
            self.energy_j += energy_j
            self.flops += flops
            if i < last:
                t += self.cost.send_time(i, batch.num_tokens)
        self.num_iterations += 1
        return t

    def account_decode_steps(
        self, steps: int, busy_s: float, energy_j: float, flops: float, end_s: float
    ) -> None:
        """Add `steps` decode iterations run in place on a one-stage replica (the last one ending at end_s)."""
        if steps:
            self.stage_free_s[0] = end_s
            self.stage_busy_s[0] += busy_s
            self.energy_j += energy_j
            self.flops += flops
            self.num_iterations += steps

    def finish_batch(self, batch: Batch, now_s: float) -> list[int]:
        """The micro-batch left the last stage: update request state; returns the requests done here."""
        self.num_in_flight -= 1
        done = self.scheduler.update_from_output(batch, now_s)
        if self.trace is not None:
            self.trace.finished(self, now_s)
        return done
