"""The solve–simulate loop behind `apex plan` (docs/design.md §5), one job per module:

* `workload` — the requests, their classes and the deadlines the goals imply;
* `settings` — engine knobs and dtypes as dimensions of the space (the values searched, a plan's scenario);
* `pricing` — replica templates (layouts × settings × roles) enumerated, pruned by dominance rules and priced
  with the cost model (predicted coefficients), with the census of what was generated, pruned and priced;
* `bounding` — every template's bounds, one computation per group of templates that price alike;
* `disaggregation` — the KV-cache stream between prefill and decode pools (link capacity and its check);
* `bounds` — per template, rates and floors the simulator cannot beat (from the cost model's StageCosts);
* `space` — the plan space and its bound and predictive masters;
* `pool` — simulated candidates and the process pool that simulates them;
* `loop` — the loop itself (`run_search`);
* `result` — `PlanSearchResult`, `SearchStats`, the no-plan error;
* `labels` — plan names and the simulation cache key.
"""

from planner.search.labels import plan_key, short_label, shorthand
from planner.search.loop import SearchOptions, prepare, run_search
from planner.search.pool import Candidate, Simulations, best_first, score
from planner.search.pricing import PricedTemplate, SpaceOptions, price_templates
from planner.search.result import PlanSearchResult, SearchStats, no_plan_error
from planner.search.workload import WorkloadProfile, WorkloadStats, workload_stats

__all__ = [
    "Candidate",
    "PlanSearchResult",
    "PricedTemplate",
    "SearchOptions",
    "SearchStats",
    "Simulations",
    "SpaceOptions",
    "WorkloadProfile",
    "WorkloadStats",
    "best_first",
    "no_plan_error",
    "plan_key",
    "prepare",
    "price_templates",
    "run_search",
    "score",
    "short_label",
    "shorthand",
    "workload_stats",
]
