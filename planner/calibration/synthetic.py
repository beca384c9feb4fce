"""SYNTHETIC benchmark runs with known coefficients, for checking that `apex calibrate` recovers them.

The "measurements" are simulations of Llama-3.1-8B on one H100 (vLLM V1) whose coefficients were perturbed on
purpose (`TRUTH`: host overheads ×3, a 5 ms frontend, compute efficiency ×0.8). Used by the calibration tests and
`bench/bench_calibrate_recovery.py`; never presented as measured data.
"""

from __future__ import annotations

from planner.bench_results.export import RunToWrite
from planner.calibration.params import Prior
from simulator.costmodel import host as host_figures
from simulator.scenario import load_scenario
from simulator.simulate import simulate

BASE = host_figures.host_overhead("vllm-v1")
TRUTH = {
    "per_iteration_s": 3 * BASE.per_iteration_s,
    "per_sequence_s": 3 * BASE.per_sequence_s,
    "frontend_s": 0.005,
    "compute_scale": 0.8,
    "memory_scale": 1.0,
}


def synthetic_scenario(n: int, rate: float, seed: int) -> dict:
    """The scenario the synthetic runs come from: `n` requests at `rate` req/s, chat-like prompts."""
    return {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "engine": {"kind": "vllm-v1"},
        "workload": {
            "requests": n,
            "arrival": {"process": "poisson", "rate": rate},
            "input_tokens": {"dist": "lognormal", "mean": 600, "std": 500, "max": 4096},
            "output_tokens": {"dist": "lognormal", "mean": 32, "std": 20, "max": 256},
            "seed": seed,
        },
        "plan": "tp=1",
    }


def truth_runs(n: int, rates, seed: int) -> list[RunToWrite]:
    """The runs a deployment with the TRUTH coefficients would have measured, one per rate."""
    sc = load_scenario(synthetic_scenario(n, rates[0], seed))
    truth = Prior.of(sc.gpus["h100-sxm"], "vllm-v1", None).calibration(TRUTH)
    return [
        RunToWrite.from_simulation(
            simulate(load_scenario(synthetic_scenario(n, r, seed)), calibration=truth), r
        )
        for r in rates
    ]
