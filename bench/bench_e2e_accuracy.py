"""End-to-end accuracy: `apex simulate` against the TensorRT-LLM offline throughput points of
data/reference/calibration.yaml (metric output_token_throughput, TRT engine flow, H100, FP8).

None of these points is used to fit anything (the cost model is calibrated on kernel/step points only),
so every error printed here is a held-out error. Each point becomes a scenario: the catalog model, 1 node of
`num_gpus` h100-sxm, tp as measured, fp8 weights and KV cache, the trtllm engine with the benchmark's
kv_cache_free_gpu_mem_fraction 0.95, fixed input/output lengths and all requests at t=0 (offline max load).
The request count is capped (REQUEST_CAP) to keep the run short; throughput is measured over the makespan.

Run: python bench/bench_e2e_accuracy.py [--cap N] [--calibration FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml

from planner import api

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "calibration.yaml"
MODELS = {"Llama-3.1-8B": "llama-3.1-8b", "Llama-3.1-70B": "llama-3.1-70b"}
REQUEST_CAP = 1000


def offline_points(path: Path) -> list[dict]:
    """The TensorRT-LLM offline throughput points of the reference file."""
    points = yaml.safe_load(path.read_text())["points"]
    return [p for p in points if p["metric"] == "output_token_throughput" and "TRT engine" in p["engine"]]


def scenario_for(point: dict, cap: int, calibration: str | None) -> dict:
    """A scenario that replays one offline benchmark point."""
    requests = int(point["batch_or_concurrency_or_rate"].split("load: ")[1].split(" ")[0])
    scenario = {
        "name": point["id"],
        "model": MODELS[point["model"]],
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": point["num_gpus"]},
        "dtype": {"weights": "fp8", "kv_cache": "fp8", "activations": "bf16"},
        # trtllm-bench sizes max_num_tokens to the workload: room for one whole prompt plus a full decode batch
        "engine": {
            "kind": "trtllm",
            "gpu_memory_fraction": 0.95,
            "max_num_batched_tokens": max(8192, point["isl"] + 2048),
        },
        "workload": {
            "requests": min(requests, cap),
            "arrival": {"process": "burst"},
            "input_tokens": {"dist": "fixed", "value": point["isl"]},
            "output_tokens": {"dist": "fixed", "value": point["osl"]},
        },
        "plan": f"tp={point['tp']},pp={point['pp']}",
    }
    if calibration:
        scenario["calibration"] = calibration
    return scenario


def serving_points(path: Path) -> list[dict]:
    """The TensorRT-LLM online serving points (Triton, Llama-3.1-8B BF16, fixed lengths, 500 requests at a QPS)."""
    points = yaml.safe_load(path.read_text())["points"]
    return [p for p in points if "Triton" in p["engine"]]


def serving_scenario(point: dict) -> dict:
    """A scenario for one serving point: Poisson arrivals at the QPS (the source does not state the process),
    all at t=0 for QPS=inf."""
    qps = point["batch_or_concurrency_or_rate"].split("QPS=")[1].split(" ")[0]
    arrival = {"process": "burst"} if qps == "inf" else {"process": "poisson", "rate": float(qps)}
    return {
        "name": point["id"],
        "model": MODELS[point["model"]],
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "dtype": {"weights": "bf16", "kv_cache": "bf16", "activations": "bf16"},
        "engine": {"kind": "trtllm"},
        "workload": {
            "requests": 500,
            "arrival": arrival,
            "input_tokens": {"dist": "fixed", "value": point["isl"]},
            "output_tokens": {"dist": "fixed", "value": point["osl"]},
            "seed": 0,
        },
        "plan": "tp=1",
    }


SERVING_METRICS = {
    "mean_ttft": lambda r: r["ttft_s"]["mean"] * 1e3,
    "mean_itl": lambda r: r["itl_s"]["mean"] * 1e3,
    "output_token_throughput": lambda r: r["throughput"]["output_tokens_per_s"],
}


def serving_table() -> None:
    """Mean TTFT, mean ITL and throughput against request rate, simulated vs measured."""
    results: dict[str, dict] = {}
    errors: dict[str, list[float]] = {m: [] for m in SERVING_METRICS}
    print(
        f"\n{'id':6} {'metric':24} {'isl/osl':>8} {'rate':>14} {'measured':>10} {'simulated':>10} {'error':>7}"
    )
    for point in serving_points(REFERENCE):
        key = (point["isl"], point["osl"], point["batch_or_concurrency_or_rate"])
        if key not in results:
            results[key] = api.simulate(serving_scenario(point)).to_json()
        predicted = SERVING_METRICS[point["metric"]](results[key])
        error = (predicted - point["value"]) / point["value"]
        errors[point["metric"]].append(abs(error))
        rate = point["batch_or_concurrency_or_rate"].split(" (")[0].replace("request rate ", "")
        print(
            f"{point['id']:6} {point['metric']:24} {point['isl']:>4}/{point['osl']:<3} {rate:>14} "
            f"{point['value']:>10.4g} {predicted:>10.4g} {error:>+7.1%}"
        )
    for metric, errs in errors.items():
        print(
            f"{metric}: {len(errs)} points, median absolute error {statistics.median(errs):.1%}, "
            f"max {max(errs):.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=REQUEST_CAP, help="max requests per point")
    parser.add_argument("--calibration", default=None, help="calibration file from `apex calibrate`")
    parser.add_argument("--serving", action="store_true", help="also the online serving TTFT/ITL points")
    args = parser.parse_args()
    rows, errors = [], []
    start = time.perf_counter()
    for point in offline_points(REFERENCE):
        result = api.simulate(scenario_for(point, args.cap, args.calibration)).to_json()
        predicted = result["throughput"]["output_tokens_per_s"]
        error = (predicted - point["value"]) / point["value"]
        errors.append(abs(error))
        rows.append(
            (
                point["id"],
                point["model"],
                point["tp"],
                point["isl"],
                point["osl"],
                point["value"],
                predicted,
                error,
            )
        )
    print(
        f"{'id':6} {'model':14} {'tp':>2} {'isl':>6} {'osl':>5} {'measured':>10} {'simulated':>10} {'error':>7}"
    )
    for r in rows:
        print(f"{r[0]:6} {r[1]:14} {r[2]:>2} {r[3]:>6} {r[4]:>5} {r[5]:>10.0f} {r[6]:>10.0f} {r[7]:>+7.1%}")
    print(
        f"\n{len(rows)} points, median absolute error {statistics.median(errors):.1%}, "
        f"mean {statistics.mean(errors):.1%}, max {max(errors):.1%}; wall {time.perf_counter() - start:.1f} s"
    )
    if args.serving:
        serving_table()


if __name__ == "__main__":
    main()
