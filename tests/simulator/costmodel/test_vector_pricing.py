"""One formula, two backends (simulator/costmodel/arrays.py): pricing an array of shapes with numpy gives exactly
the prices of each shape priced alone in floats — kernels, collectives, every static op of a stage, and the
stage price tables the simulator reads (replica._RowPrices)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import catalog
from simulator.costmodel import BatchShape, build_stage_cost, comm
from simulator.costmodel.kernels import BOUNDS, gemm_kernel, gemm_times, memory_kernel, memory_times
from simulator.costmodel.ops import Load, op_times, price_op
from simulator.costmodel.replica import SINGLE_COUNTS, clear_price_caches
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import Stage
from simulator.scenario import DTypes, Engine

GPUS = [("h100-sxm", None), ("a100-sxm-80gb", None), ("b200", None), ("h200-sxm", 1100)]
ROWS = np.array([0.0, 0.5, 1, 2, 7, 15, 16, 17, 64, 100, 127, 128, 129, 255, 1000, 3333, 8191, 8192, 20000])


def _gpu(name, mhz):
    return catalog.get_gpu(name).at_clock(mhz)


def _same(vector, i, scalar):
    """Element i of a KernelTimes of arrays equals a KernelTime of floats, bit for bit."""
    got = (
        vector.seconds[i],
        vector.flops[i],
        vector.bytes[i],
        BOUNDS[int(vector.bound[i])],
        vector.fixed_s[i],
    )
    assert got == tuple(scalar)


@pytest.mark.parametrize("gpu_name,mhz", GPUS)
@pytest.mark.parametrize("dtype,wb,ab", [("bf16", 2, 2), ("fp8", 1, 2), ("fp8", 1, 1)])
@pytest.mark.parametrize(
    "n,k,groups", [(1280, 8192, 1), (8192, 1024, 1), (16032, 8192, 1), (5120, 3584.5, 2.5)]
)
def test_gemm_times_of_an_array_equal_each_shape_priced_alone(gpu_name, mhz, dtype, wb, ab, n, k, groups):
    """Split-K choice, quantization pass, locked clock, zero rows: the array path is the float path."""
    gpu = _gpu(gpu_name, mhz)
    many = gemm_times(gpu, ROWS, n, k, wb, ab, dtype, groups)
    for i, m in enumerate(ROWS):
        _same(many, i, gemm_kernel(gpu, m, n, k, wb, ab, dtype, groups))


def test_memory_times_of_an_array_equal_each_size_priced_alone(h100):
    sizes = np.array([0.0, 1.0, 1e3, 1e6, 1e9])
    many = memory_times(h100, sizes, 3.0)
    for i, nbytes in enumerate(sizes):
        _same(many, i, memory_kernel(h100, nbytes, 3.0))


@pytest.mark.parametrize("gpu_name", ["h100-sxm", "a100-sxm-80gb"])
@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_collective_times_of_an_array_equal_each_size_priced_alone(gpu_name, n):
    gpu = catalog.get_gpu(gpu_name)
    fabric = catalog.get_fabric(gpu.scale_up_fabric)
    sizes = np.array([0.0, 1.0, 100.0, 1e4, 1e6, 3e7, 1e9])
    pairs = [
        (comm.all_reduce_times, comm.all_reduce_seconds),
        (comm.all_to_all_times, comm.all_to_all_seconds),
    ]
    for many, one in pairs:
        times = many(fabric, gpu.efficiency, n, sizes, gpu.clock_ghz)
        assert times.tolist() == [one(fabric, gpu.efficiency, n, x, gpu.clock_ghz) for x in sizes]


CASES = [
    ("llama-3.1-70b", {"tp": 8}, DTypes(weights="fp8", kv_cache="fp8"), "h100-sxm", None),
    ("mixtral-8x7b", {"tp": 2, "ep": 2}, DTypes(), "h100-sxm", None),
    (
        "deepseek-v3",
        {"attention": {"tp": 2, "dp": 4}, "ffn": {"tp": 1, "ep": 8}},
        DTypes(weights="fp8"),
        "h200-sxm",
        None,
    ),
    ("llama-3.1-8b", {"tp": 2}, DTypes(weights="fp8"), "h200-sxm", 1200),
]


def _stage(case):
    model_name, cells, dtypes, gpu_name, mhz = case
    model = catalog.get_model(model_name)
    cluster = Cluster(node_groups=[NodeGroup(gpu=gpu_name, nodes=2, gpus_per_node=8)])
    stage = Stage(layers=(0, model.num_layers), **cells)
    gpu = _gpu(gpu_name, mhz)
    return build_stage_cost(model, stage, gpu, cluster, dtypes, Engine(), first=True, last=True)


@pytest.mark.parametrize("case", CASES, ids=["70b-fp8", "mixtral-ep2", "dsv3-attn-dp", "8b-locked"])
def test_every_static_op_priced_over_arrays_equals_the_op_priced_alone(case):
    stage = _stage(case)
    tokens = np.array([1.0, 2, 3, 17, 64, 255, 256, 1000, 4097, 8192])
    seqs = np.array([1.0, 1, 3, 5, 64, 7, 256, 9, 33, 256])
    loads = Load.of(tokens, seqs, stage.ops.split)
    for op in stage.ops.static:
        many = op_times(op, loads, stage.gpu)
        for i, (t, s) in enumerate(zip(tokens, seqs, strict=True)):
            one = price_op(op, Load.of(int(t), int(s), stage.ops.split), stage.gpu)
            _same(many, i, (one.time_s, one.flops, one.bytes, one.bound, one.fixed_s))


def _layer_table(stage):
    """The one-layer token-row price table of the stage's repeated layers (its group of most layers)."""
    return stage._tables["tokens"].groups[-1][1]


@pytest.mark.parametrize("case", CASES, ids=["70b-fp8", "mixtral-ep2", "dsv3-attn-dp", "8b-locked"])
def test_price_tables_read_what_counts_priced_alone_give(case):
    """Counts are priced alone until they have paid for a table (SINGLE_COUNTS table counts each), later ones
    read from a table priced over arrays: a count read from the table has the price a cold stage gives it
    alone."""
    clear_price_caches()
    warm = _stage(case)
    table = _layer_table(warm)
    alone = 3072 // SINGLE_COUNTS  # the counts that pay for a table of 3,072 rows
    for x in range(2900, 2900 + alone):  # counts near 3,000: each alone is cheaper than a table up to it
        table[x]
    assert not table._columns[0]  # priced one at a time so far
    counts = [3000, 1, 511, 512, 513, 3071]
    tabled = [table[x] for x in counts]
    assert len(table._columns[0]) == 3072  # whole steps of 512 counts
    assert table[4000] and len(table._columns[0]) == 3072  # one count alone does not pay for 1,024 rows
    clear_price_caches()
    cold = _layer_table(_stage(case))
    assert tabled == [cold[x] for x in counts]
    assert not cold._columns[0]


def test_scattered_large_counts_are_priced_alone():
    """A few counts far apart (the planner's capacity search up to the token budget) never build a table of
    every count below them: the table grows only when the counts priced alone have paid for the growth."""
    clear_price_caches()
    table = _layer_table(_stage(CASES[0]))
    for x in (1014, 129, 193, 256, 647, 951, 1443, 8192, 16384):
        table[x]
    assert not table._columns[0]


def test_stages_of_one_split_share_their_one_layer_tables():
    """Stages of other depths with the same GPU and split read one set of one-layer tables (a pipeline's
    stages, a layout's other depths), and each prices its own layers: the fused price stays the breakdown's."""
    clear_price_caches()
    model = catalog.get_model("llama-3.1-70b")
    cluster = Cluster(node_groups=[NodeGroup(gpu="h100-sxm", nodes=2, gpus_per_node=8)])
    gpu = _gpu("h100-sxm", None)

    def middle(layers):
        stage = Stage(layers=layers, tp=4)
        return build_stage_cost(model, stage, gpu, cluster, DTypes(), Engine(), first=False, last=False)

    short, long = middle((10, 30)), middle((30, 70))
    ((n_short, rows_short),) = short._tables["tokens"].groups
    ((n_long, rows_long),) = long._tables["tokens"].groups
    assert (n_short, n_long) == (20, 40) and rows_short is rows_long
    shape = BatchShape.from_requests([300], [0], [1000, 20])
    for stage in (short, long):
        parts = sum(c.time_s for c in stage.breakdown(shape))
        assert stage.iteration_time(shape) == pytest.approx(parts, rel=1e-9)
    assert long.iteration_time(shape) > short.iteration_time(shape)
