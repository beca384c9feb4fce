"""Host figures from a calibration file: per-step overheads reach the cost model, the per-request frontend cost
reaches TTFT and E2E but not ITL, another engine's figures are not applied, and bad `host` sections exit 2."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml

from simulator.costmodel import build_replica_cost, load_calibration
from simulator.costmodel import host as host_figures
from simulator.costmodel.calibration import Calibration
from simulator.costmodel.interface import BatchShape
from simulator.errors import InputError, InputWarning
from simulator.scenario import load_scenario
from simulator.simulate import simulate

SCENARIO = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
    "engine": {"kind": "vllm-v1"},
    "workload": {
        "requests": 40,
        "arrival": {"process": "poisson", "rate": 8.0},
        "input_tokens": {"dist": "uniform", "low": 64, "high": 512},
        "output_tokens": {"dist": "uniform", "low": 4, "high": 24},
        "seed": 3,
    },
    "plan": "tp=1",
}


def _cal(engine="vllm-v1", **host) -> Calibration:
    return Calibration(gpu="h100-sxm", overrides={}, engine=engine, host=host)


def _stage(scenario, calibration):
    group = scenario.plan.replicas[0]
    spec = scenario.spec
    cost = build_replica_cost(
        scenario.model,
        group,
        scenario.gpus,
        scenario.cluster,
        spec.dtype,
        spec.engine,
        calibration=calibration,
    )
    return cost.stages[0]


def test_host_step_figures_reach_the_iteration_time():
    sc = load_scenario(SCENARIO)
    base = host_figures.host_overhead("vllm-v1")
    shape = BatchShape(num_decode=16, decode_context_tokens=16 * 300)
    t0 = _stage(sc, None).iteration_time(shape)
    cal = _cal(per_iteration_s=3 * base.per_iteration_s, per_sequence_s=3 * base.per_sequence_s)
    t1 = _stage(sc, cal).iteration_time(shape)
    assert t1 - t0 == pytest.approx(2 * base.step_seconds(16), rel=1e-9)


def test_frontend_delays_ttft_and_e2e_by_exactly_its_value_and_leaves_itl_alone():
    sc = load_scenario(SCENARIO)
    plain = simulate(sc).request_columns()
    shifted = simulate(sc, calibration=_cal(frontend_s=0.005)).request_columns()
    np.testing.assert_allclose(shifted["ttft_s"] - plain["ttft_s"], 0.005, rtol=0, atol=1e-12)
    np.testing.assert_allclose(shifted["e2e_s"] - plain["e2e_s"], 0.005, rtol=0, atol=1e-12)
    np.testing.assert_allclose(shifted["tpot_s"], plain["tpot_s"], rtol=1e-12, equal_nan=True)


def test_host_figures_of_another_engine_are_not_applied_and_say_so():
    sc = load_scenario({**SCENARIO, "engine": {"kind": "sglang"}})
    shape = BatchShape(num_decode=4, decode_context_tokens=400)
    t0 = _stage(sc, None).iteration_time(shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t1 = _stage(sc, _cal(engine="vllm-v1", per_iteration_s=0.01)).iteration_time(shape)
    assert t1 == t0
    assert any(issubclass(w.category, InputWarning) and "vllm-v1" in str(w.message) for w in caught)


def test_calibration_file_without_host_keys_loads_as_before(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"gpu": "h100-sxm", "overrides": {"gemm_max": 0.7}, "method": "m"}))
    cal = load_calibration(path)
    assert cal.overrides == {"gemm_max": 0.7} and cal.host == {} and cal.engine is None


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"engine": "vllm-v1", "host": {"per_step_s": 0.001}}, "host.per_step_s"),
        ({"engine": "vllm-v1", "host": {"frontend_s": -0.001}}, "host.frontend_s"),
        ({"engine": "vllm-v1", "host": {"frontend_s": "5 ms"}}, "host.frontend_s"),
        ({"engine": "vllm-v1", "host": {"per_iteration_s": 30.0}}, "host.per_iteration_s"),
        ({"engine": "vllm-v1", "host": [1, 2]}, "host"),
        ({"host": {"frontend_s": 0.001}}, "engine"),
        ({"engine": "tgi", "host": {"frontend_s": 0.001}}, "engine"),
    ],
)
def test_bad_host_section_names_the_file_and_field(tmp_path, extra, field):
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump({"gpu": "h100-sxm", "overrides": {}, **extra}))
    with pytest.raises(InputError) as info:
        load_calibration(path)
    assert info.value.field == field and str(path) in str(info.value)
