"""Time the iteration pricing of the cost model, cached and uncached (microseconds per call), as wall time and
as this process's CPU time (the CPU figure is the one to compare on a shared machine). Not a test: run it
directly."""

from __future__ import annotations

import time

from simulator import catalog
from simulator.costmodel import BatchShape, build_replica_cost
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import ReplicaGroup, Stage
from simulator.scenario import DTypes, Engine


def main(calls: int = 100_000) -> None:
    gpu = catalog.get_gpu("h100-sxm")
    cluster = Cluster(node_groups=[NodeGroup(gpu="h100-sxm")])
    for name, stage in (
        ("llama-3.1-70b tp4", Stage(layers=(0, 80), tp=4)),
        ("mixtral-8x7b tp2 ep2", Stage(layers=(0, 32), tp=2, ep=2)),
    ):
        model = catalog.get_model(name.split()[0])
        rep = build_replica_cost(
            model, ReplicaGroup(stages=[stage]), {"h100-sxm": gpu}, cluster, DTypes(), Engine()
        )
        st = rep.stages[0]
        shape = BatchShape.from_requests([512], [1024], [1500] * 63)
        st.iteration_time(shape)  # fill the cache
        start = time.perf_counter()
        for _ in range(calls):
            st.iteration_time(shape)
        cached = (time.perf_counter() - start) / calls * 1e6
        n_cold = 2000
        shapes = [BatchShape.from_requests([1 + i], [0], [1500] * 63) for i in range(n_cold)]
        start, cpu = time.perf_counter(), time.process_time()
        for s in shapes:  # a new token count each call: nothing of the static part is cached
            st.iteration_time(s)
        cold = (time.perf_counter() - start) / n_cold * 1e6
        cold_cpu = (time.process_time() - cpu) / n_cold * 1e6
        print(
            f"{name}: cached iteration_time {cached:.2f} us/call, uncached {cold:.1f} us/call "
            f"(CPU {cold_cpu:.1f} us)"
        )


if __name__ == "__main__":
    main()
