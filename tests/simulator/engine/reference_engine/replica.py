"""One replica: a scheduler and a pipeline of stages priced by a ReplicaCost.

Pipeline parallelism keeps up to pp micro-batches in flight. A micro-batch enters stage 0 when it is free,
passes stage 0..pp-1 with `send_time` between stages, and each stage runs one micro-batch at a time in
arrival order, so the whole path is known when the batch is scheduled. Throughput is set by the slowest
stage; unbalanced stages leave the others idle (bubbles). With pp = 1 this is one batch at a time.
"""

from __future__ import annotations

from reference_engine.schedulers import Batch, Scheduler
from simulator.costmodel.interface import BatchShape, ReplicaCost


class Replica:
    def __init__(self, index: int, role: str, scheduler: Scheduler, cost: ReplicaCost):
        self.index = index
        self.role = role
        self.scheduler = scheduler
        self.cost = cost
        self.stages = list(cost.stages)
        self.pp = len(self.stages)
        scheduler.track_in_flight = self.pp > 1
        self.stage_free_s = [0.0] * self.pp
        self.stage_busy_s = [0.0] * self.pp
        self.num_in_flight = 0
        self.wake_pending = False
        self.energy_j = 0.0
        self.flops = 0.0
        self.num_iterations = 0
        self._priced: dict[BatchShape, tuple] = {}

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
            self.num_in_flight += 1
            started.append((self._run_stages(batch.shape, now_s), batch))
        return started, None

    def _run_stages(self, shape: BatchShape, now_s: float) -> float:
        prices = self._priced.get(shape)
        if prices is None:
            prices = tuple(self._price(stage, shape) for stage in self.stages)
            if len(self._priced) < 65536:
                self._priced[shape] = prices
        t = now_s
        last = self.pp - 1
        for i, (time_s, energy_j, flops) in enumerate(prices):
            start = t if t > self.stage_free_s[i] else self.stage_free_s[i]
            t = start + time_s
            self.stage_free_s[i] = t
            self.stage_busy_s[i] += time_s
            self.energy_j += energy_j
            self.flops += flops
            if i < last:
                t += self.cost.send_time(i, shape.num_tokens)
        self.num_iterations += 1
        return t

    @staticmethod
    def _price(stage, shape: BatchShape) -> tuple[float, float, float]:
        time_s = stage.iteration_time(shape)
        return time_s, stage.energy(shape, time_s), stage.flops(shape)

    def finish_batch(self, batch: Batch, now_s: float):
        """The micro-batch left the last stage: update request state; returns the requests done here."""
        self.num_in_flight -= 1
        return self.scheduler.update_from_output(batch, now_s)
