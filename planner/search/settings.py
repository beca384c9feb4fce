"""Engine knobs and dtypes as dimensions of the plan space (docs/design.md §4, §5.2).

A plan's settings (`formulations.templates.EngineSettings`: max running sequences, token budget, chunked
prefill, weight and KV-cache dtypes) are plan-wide — the simulator runs every replica of a plan with one engine
and one set of dtypes — so every template carries its settings and the master keeps a plan's templates in one
settings group.

* `scenario_settings(scenario)` — the scenario's own settings (its engine's values, the kind's defaults filled in,
  the first allowed dtype): the settings of a plan written without any (heuristics, `--plan`).
* `candidate_settings(scenario)` — the values searched per dimension: a knob the scenario sets is fixed; a knob
  left to the engine's default is searched over `KNOB_GRID` (the default always included); dtypes over the
  scenario's allowed lists (`dtype: {weights: [bf16, fp8]}`), else the one it names; prefix caching on and off
  when the scenario says `engine.prefix_caching: auto`, its stated speculative decoding on and off when it says
  `engine.speculative.enabled: auto` (`with_features` copies the priced templates per variant).
* `apply_settings(scenario, settings)` — the scenario a plan with these settings is simulated (and emitted) in.

Which of the candidates a template keeps is decided in `pricing.py` by the dominance rules stated there
(the analytic model's figures), never by a fixed single grid point.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from dataclasses import replace as dc_replace

from formulations.templates import EngineSettings
from simulator.scenario import DTypes, Engine, Scenario, engine_setting

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
        prefix_caching=bool(engine_setting(spec.engine, "prefix_caching"))
        if opens_prefix_caching(scenario)
        else None,
        speculative=True if opens_speculative(scenario) else None,
    )


def opens_prefix_caching(scenario: Scenario) -> bool:
    """Whether the planner chooses prefix caching (`engine.prefix_caching: auto`)."""
    return scenario.spec.engine.prefix_caching == "auto"


def opens_speculative(scenario: Scenario) -> bool:
    """Whether the planner chooses between the stated speculative decoding and none (`enabled: auto`)."""
    spec = scenario.spec.engine.speculative
    return spec is not None and spec.enabled == "auto"


@dataclass(frozen=True, slots=True)
class SettingChoices:
    """The values searched per dimension (each a tuple whose first entry is the scenario's own)."""

    max_num_seqs: tuple[int, ...]
    max_num_batched_tokens: tuple[int, ...]
    enable_chunked_prefill: tuple[bool, ...]
    weights_dtype: tuple[str, ...]
    kv_cache_dtype: tuple[str, ...]
    prefix_caching: tuple[bool | None, ...] = (None,)
    speculative: tuple[bool | None, ...] = (None,)

    def searched(self) -> dict[str, tuple]:
        """The dimensions with more than one value."""
        return {
            name: getattr(self, name)
            for name in EngineSettings.SCENARIO_PATHS
            if len(getattr(self, name)) > 1
        }

    def dtypes(self) -> list[tuple[str, str]]:
        return list(itertools.product(self.weights_dtype, self.kv_cache_dtype))

    def features(self) -> list[tuple[bool | None, bool | None]]:
        """(prefix_caching, speculative) of every feature variant, the scenario's own first."""
        return list(itertools.product(self.prefix_caching, self.speculative))


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
        prefix_caching=(own.prefix_caching, not own.prefix_caching)
        if own.prefix_caching is not None
        else (None,),
        speculative=(True, False) if own.speculative else (None,),
    )


def with_features(priced: list, choices: SettingChoices) -> list:
    """Every priced template (`pricing.PricedTemplate`) once per feature variant of `choices` (prefix caching
    on / off, speculative decoding on / off where the scenario opens them). The copies share the template's
    replica cost and analytic prediction — neither the cost model nor the analytic first pass models these
    features (they order candidates only); each variant's bounds come from its own workload profile
    (loop.prepare) and its simulations from its own scenario (`apply_settings`)."""
    variants = choices.features()
    if variants == [(None, None)]:
        return priced
    out = []
    for p in priced:
        for cache, spec in variants:
            settings = dc_replace(p.template.settings, prefix_caching=cache, speculative=spec)
            kinds = p.kinds + tuple(  # census kinds of the variants other than the scenario's own
                f"{label} {'on' if value else 'off'}"
                for label, value, own in (
                    ("prefix caching", cache, variants[0][0]),
                    ("speculative decoding", spec, variants[0][1]),
                )
                if value != own
            )
            out.append(dc_replace(p, template=dc_replace(p.template, settings=settings), kinds=kinds))
    return out


def engine_with(engine: Engine, settings: EngineSettings) -> Engine:
    """The scenario's engine with the knobs of `settings` (speculative on / off as `speculative.enabled`)."""
    updates = dict(settings.scenario_updates().get("engine", {}))
    enabled = updates.pop("speculative.enabled", None)
    out = engine.model_copy(update=updates)
    if enabled is not None and out.speculative is not None:
        out = out.model_copy(update={"speculative": out.speculative.model_copy(update={"enabled": enabled})})
    return out


def apply_settings(scenario: Scenario, settings: EngineSettings | None) -> Scenario:
    """The scenario with the engine knobs and dtypes of `settings` (the scenario itself for None or its own
    settings; a feature the scenario left to the planner is always written, `auto` becoming on or off)."""
    own = settings is None or settings == scenario_settings(scenario)
    opened = settings is not None and (
        settings.prefix_caching is not None or settings.speculative is not None
    )
    if (
        own
        and not opened
        and scenario.spec.dtype.weights_allowed is None
        and scenario.spec.dtype.kv_cache_allowed is None
    ):
        return scenario
    spec = scenario.spec
    updates = settings.scenario_updates() if settings is not None else {}
    engine = engine_with(spec.engine, settings) if settings is not None else spec.engine
    dtype_values = {**spec.dtype.model_dump(), **updates.get("dtype", {})}
    dtype = DTypes(**dtype_values)
    new_spec = spec.model_copy(update={"engine": engine, "dtype": dtype})
    return dc_replace(scenario, spec=new_spec)
