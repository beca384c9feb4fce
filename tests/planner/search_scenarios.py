"""Scenarios whose whole plan space is small enough to simulate: the loop is checked against --exhaustive on
them (tests/planner/test_search.py, slow tier) and bench/bench_planner.py reports them.

`compare(name)` runs --exhaustive (every plan of the space simulated), then the loop over the same space with
the exhaustive run's results as its simulator (the simulator is deterministic, so a result looked up is the
result it would compute; the loop still counts every plan it asks for)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.plan_api import plan
from planner.search import plan_key
from planner.search.settings import scenario_settings
from simulator.simulate import simulate

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs" / "examples"


def chat(rate: float, requests: int = 300, seed: int = 3) -> dict:
    return {
        "requests": requests,
        "arrival": {"process": "poisson", "rate": rate},
        "input_tokens": {"dist": "lognormal", "mean": 768, "std": 400, "max": 4096},
        "output_tokens": {"dist": "lognormal", "mean": 192, "std": 100, "max": 1024},
        "seed": seed,
    }


def mixture(rate: float, requests: int = 300) -> dict:
    """Short chat and long summarisation, one trace: the classes the master routes apart."""
    return {
        "requests": requests,
        "arrival": {"process": "poisson", "rate": rate},
        "input_tokens": {
            "dist": "empirical",
            "values": [256, 512, 6000, 7000],
            "weights": [0.4, 0.3, 0.15, 0.15],
        },
        "output_tokens": {"dist": "empirical", "values": [256, 128, 96, 64], "weights": [0.3, 0.3, 0.2, 0.2]},
        "seed": 5,
    }


SLO = {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.05}}
H100x8 = {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8}
MIXED = {
    "node_groups": [
        {"name": "h", "gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 4},
        {"name": "a", "gpu": "a100-sxm-80gb", "nodes": 1, "gpus_per_node": 4},
    ]
}

# name -> (scenario, max templates per plan)
SCENARIOS: dict[str, tuple[object, int | None]] = {
    "hetero-h100-a100-cost (shipped)": (EXAMPLES / "hetero-h100-a100-cost.yaml", 1),
    "mixtral-8x22b-2node-energy (shipped)": (EXAMPLES / "mixtral-8x22b-2node-energy.yaml", 2),
    "llama-8b 8xH100 min_cost": (
        {
            "model": "llama-3.1-8b",
            "cluster": H100x8,
            "workload": chat(25),
            "goals": {"objective": "min_cost", "slo": SLO},
        },
        2,
    ),
    "mixtral-8x7b 8xH100 max_goodput": (
        {
            "model": "mixtral-8x7b",
            "cluster": H100x8,
            "workload": chat(12),
            "goals": {"objective": "max_goodput", "slo": SLO},
        },
        2,
    ),
    "llama-70b 2x8xH100 max_throughput": (
        {
            "model": "llama-3.1-70b",
            "cluster": {"gpu": "h100-sxm", "nodes": 2, "gpus_per_node": 8},
            "workload": chat(10),
            "goals": {"objective": "max_throughput"},
        },
        2,
    ),
    "llama-8b 8xH100 min_latency": (
        {
            "model": "llama-3.1-8b",
            "cluster": H100x8,
            "workload": chat(25),
            "goals": {"objective": "min_latency", "slo": SLO},
        },
        2,
    ),
    "llama-8b H100+A100 min_energy": (
        {
            "model": "llama-3.1-8b",
            "cluster": MIXED,
            "workload": chat(15),
            "goals": {"objective": "min_energy", "slo": SLO},
        },
        1,
    ),
    "qwen3-32b H100+A100 mixture min_cost": (
        {
            "model": "qwen3-32b",
            "cluster": MIXED,
            "workload": mixture(4),
            "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 3.0}, "tpot_s": {"p99": 0.08}}},
        },
        2,
    ),
}


def replay_key(plan, settings) -> str:
    """A simulation's identity: the plan and the engine knobs and dtypes it runs with."""
    return plan_key(plan) + "|" + settings.key


class Replay:
    """A simulate_fn that answers from recorded results (by plan key) and simulates what it has not seen."""

    def __init__(self, recorded: dict[str, dict]):
        self.recorded = recorded
        self.missed = 0

    def __call__(self, scenario):
        hit = self.recorded.get(replay_key(scenario.plan, scenario_settings(scenario)))
        if hit is not None:
            return hit
        self.missed += 1
        return simulate(scenario).to_json()


@dataclass
class Comparison:
    name: str
    exhaustive: object  # PlanSearchResult
    search: object  # PlanSearchResult
    outside: int  # plans the loop asked for that --exhaustive had not simulated


def compare(name: str, *, workers: int = 2) -> Comparison:
    scenario, max_templates = SCENARIOS[name]
    return compare_scenario(name, scenario, max_templates, workers=workers)


def compare_scenario(name: str, scenario, max_templates: int | None, *, workers: int = 2) -> Comparison:
    reference = plan(
        scenario, exhaustive=True, workers=workers, max_templates=max_templates, time_limit_s=3600
    )
    recorded = {replay_key(c.plan, c.settings): c.metrics for c in reference.candidates if c.metrics}
    replay = Replay(recorded)
    found = plan(scenario, workers=1, max_templates=max_templates, simulate_fn=replay, time_limit_s=3600)
    return Comparison(name, reference, found, replay.missed)


# The larger space (tests/planner/test_plan_space.py, slow tier): scenarios whose winner is disaggregated, depends
# on an engine knob, or uses a dtype from the scenario's allowed list. name -> (scenario, kind). The
# disaggregated ones are the shipped example and the same model, cluster and goals on other request samples
# (seeds; on seeds 4 and 7 a colocated tp2 replica ties the pair's cost and the exhaustive order picks it), and
# Qwen3-32B on 8×H100 (a tp2 prefill replica handing over to a tp2 decode replica meets TPOT p99 20 ms on 4 GPUs
# with 19.0 ms; 1×tp4 reaches 24.4 ms, 3×tp2 23.5 ms, and the colocated plans that meet it take 8). The knob
# ones are MoE models whose decode stays memory-bound past vLLM's default of 256 running sequences: the winner
# raises max_num_seqs, and with the default the same plan falls behind its arrivals (TTFT).
LONG_PROMPTS = {"dist": "lognormal", "mean": 6000, "std": 1500, "max": 12000}
DECODE = {"dist": "lognormal", "mean": 256, "std": 100, "max": 1024}


def _space_case(model, gpus, rate, tpot_s, *, seed=3, inputs=LONG_PROMPTS, ttft_s=2.0, dtype=None) -> dict:
    out = {
        "model": model,
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": gpus},
        "workload": {
            "requests": 200,
            "arrival": {"process": "poisson", "rate": rate},
            "input_tokens": inputs,
            "output_tokens": DECODE,
            "seed": seed,
        },
        "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": ttft_s}, "tpot_s": {"p99": tpot_s}}},
    }
    if dtype:
        out["dtype"] = dtype
    return out


SPACE_SCENARIOS: dict[str, tuple[object, str]] = {
    "disaggregated-long-prompts (shipped)": (EXAMPLES / "disaggregated-long-prompts.yaml", "disaggregated"),
    "llama-8b 4xH100 long prompts, TPOT 11.5 ms, seed 5": (
        _space_case("llama-3.1-8b", 4, 3.0, 0.0115, seed=5),
        "disaggregated",
    ),
    "llama-8b 4xH100 long prompts, TPOT 11.5 ms, seed 6": (
        _space_case("llama-3.1-8b", 4, 3.0, 0.0115, seed=6),
        "disaggregated",
    ),
    "llama-8b 4xH100 long prompts, TPOT 11.5 ms, seed 8": (
        _space_case("llama-3.1-8b", 4, 3.0, 0.0115, seed=8),
        "disaggregated",
    ),
    "qwen3-32b 8xH100 long prompts, TPOT 20 ms": (
        {
            "model": "qwen3-32b",
            "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8},
            "workload": {
                "requests": 200,
                "arrival": {"process": "poisson", "rate": 1.5},
                "input_tokens": LONG_PROMPTS,
                "output_tokens": DECODE,
                "seed": 3,
            },
            "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.020}}},
        },
        "disaggregated",
    ),
    "knob-max-num-seqs-moe (shipped)": (EXAMPLES / "knob-max-num-seqs-moe.yaml", "knob"),
    "qwen3-235b fp8 8xH200 short chat, max_num_seqs": (
        {
            "model": "qwen3-235b-a22b",
            "cluster": {"gpu": "h200-sxm", "nodes": 1, "gpus_per_node": 8},
            "dtype": {"weights": "fp8", "kv_cache": "fp8"},
            "workload": {
                "requests": 1000,
                "arrival": {"process": "poisson", "rate": 28.0},
                "input_tokens": {"dist": "lognormal", "mean": 256, "std": 100, "max": 1024},
                "output_tokens": {"dist": "lognormal", "mean": 256, "std": 100, "max": 1024},
                "seed": 3,
            },
            "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.1}}},
        },
        "knob",
    ),
    "llama-70b 8xH100 weights bf16 or fp8": (
        _space_case(
            "llama-3.1-70b",
            8,
            4.0,
            0.05,
            inputs={"dist": "lognormal", "mean": 1024, "std": 400, "max": 4096},
            dtype={"weights": ["bf16", "fp8"]},
        ),
        "dtype",
    ),
}
