"""Engine knobs and dtypes as dimensions of the plan space (docs/design.md §4, §5.2).

A plan's settings (`formulations.templates.EngineSettings`: max running sequences, token budget, chunked
prefill, weight and KV-cache dtypes) are plan-wide — the simulator runs every replica of a plan with one engine
and one set of dtypes — so every template carries its settings and the master keeps a plan's templates in one
settings group.

* `scenario_settings(scenario)` — the scenario's own settings (its engine's values, the kind's defaults filled in,
  the first allowed dtype): the settings of a plan written without any (heuristics, `--plan`).
* `candidate_settings(scenario)` — the values searched per dimension: a knob the scenario sets is fixed; a knob
  left to the engine's default is searched over `KNOB_GRID` (the default always included); dtypes over the
  scenario's allowed lists (`dtype: {weights: [bf16, fp8]}`), else the one it names.
* `apply_settings(scenario, settings)` — the scenario a plan with these settings is simulated (and emitted) in.

Which of the candidates a template keeps is decided in `pricing.py` by the dominance rules stated there
(the analytic model's figures), never by a fixed single grid point.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from dataclasses import replace as dc_replace

from formulations.templates import EngineSettings
from simulator.scenario import DTypes, Scenario, engine_setting

# Knob values searched when the scenario leaves a knob to the engine's default (the default is always added).
# max_num_seqs: caps below the default (TPOT held under load) and above it (vLLM's 256 limits the decode batch of
# a replica whose KV cache and TPOT target allow more: MoE decode stays memory-bound well past 256 sequences,
# every step reading all experts' weights); token budgets from small chunks (decodes interleave with short
# prefill pieces) to whole long prompts.
KNOB_GRID: dict[str, tuple] = {
    "max_num_seqs": (16, 32, 64, 128, 256, 512, 1024),
    "max_num_batched_tokens": (2048, 4096, 8192, 16384),
    "enable_chunked_prefill": (True, False),
}
# Engines whose schedulers implement both chunked and whole-prompt prefill (simulator/engine/schedulers).
CHUNKING_ENGINES = ("vllm-v0", "vllm-v1", "sglang", "trtllm")


def scenario_settings(scenario: Scenario) -> EngineSettings:
    """The settings a plan gets from the scenario itself."""
    spec = scenario.spec
    return EngineSettings(
        max_num_seqs=int(engine_setting(spec.engine, "max_num_seqs")),
        max_num_batched_tokens=int(engine_setting(spec.engine, "max_num_batched_tokens")),
        enable_chunked_prefill=bool(engine_setting(spec.engine, "enable_chunked_prefill")),
        weights_dtype=spec.dtype.weights,
        kv_cache_dtype=spec.dtype.kv_cache,
    )


@dataclass(frozen=True, slots=True)
class SettingChoices:
    """The values searched per dimension (each a tuple whose first entry is the scenario's own)."""

    max_num_seqs: tuple[int, ...]
    max_num_batched_tokens: tuple[int, ...]
    enable_chunked_prefill: tuple[bool, ...]
    weights_dtype: tuple[str, ...]
    kv_cache_dtype: tuple[str, ...]

    def searched(self) -> dict[str, tuple]:
        """The dimensions with more than one value."""
        return {
            name: getattr(self, name)
            for name in EngineSettings.SCENARIO_PATHS
            if len(getattr(self, name)) > 1
        }

    def dtypes(self) -> list[tuple[str, str]]:
        return list(itertools.product(self.weights_dtype, self.kv_cache_dtype))


def candidate_settings(scenario: Scenario, *, knobs: bool = True) -> SettingChoices:
    """The values searched per dimension (see the module docstring); `knobs=False` fixes every knob at the
    scenario's value (dtypes are still searched over the allowed lists)."""
    spec = scenario.spec
    engine = spec.engine
    own = scenario_settings(scenario)

    def values(knob: str, default) -> tuple:
        if not knobs or getattr(engine, knob) is not None:
            return (default,)
        grid = KNOB_GRID[knob]
        if knob == "enable_chunked_prefill" and engine.kind not in CHUNKING_ENGINES:
            grid = ()
        return (default,) + tuple(sorted(v for v in set(grid) if v != default))

    return SettingChoices(
        max_num_seqs=values("max_num_seqs", own.max_num_seqs),
        max_num_batched_tokens=values("max_num_batched_tokens", own.max_num_batched_tokens),
        enable_chunked_prefill=values("enable_chunked_prefill", own.enable_chunked_prefill),
        weights_dtype=tuple(spec.dtype.weight_choices),
        kv_cache_dtype=tuple(spec.dtype.kv_cache_choices),
    )


def apply_settings(scenario: Scenario, settings: EngineSettings | None) -> Scenario:
    """The scenario with the engine knobs and dtypes of `settings` (the scenario itself for None or its own
    settings)."""
    own = settings is None or settings == scenario_settings(scenario)
    if own and scenario.spec.dtype.weights_allowed is None and scenario.spec.dtype.kv_cache_allowed is None:
        return scenario
    spec = scenario.spec
    updates = settings.scenario_updates() if settings is not None else {}
    engine = spec.engine.model_copy(update=updates.get("engine", {}))
    dtype_values = {**spec.dtype.model_dump(), **updates.get("dtype", {})}
    dtype = DTypes(**dtype_values)
    new_spec = spec.model_copy(update={"engine": engine, "dtype": dtype})
    return dc_replace(scenario, spec=new_spec)
