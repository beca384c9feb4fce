"""`simulate_reference(scenario)`: a Scenario through the reference engine, built like `simulate()` does."""

from __future__ import annotations

from reference_engine.run import simulate_requests
from simulator.simulate import _plan_peak_flops, _unused_idle_watts, replica_specs
from simulator.workload import generate


def simulate_reference(scenario):
    """(result, system) of the reference engine on the scenario's plan and workload."""
    spec = scenario.spec
    return simulate_requests(
        generate(spec.workload, file=scenario.file),
        replica_specs(scenario),
        spec.engine,
        seed=spec.workload.seed,
        slo=spec.goals.slo,
        plan_label=scenario.plan.label(),
        peak_flops=_plan_peak_flops(scenario),
        unused_idle_watts=_unused_idle_watts(scenario),
        max_model_len=scenario.model.max_context,
    )
