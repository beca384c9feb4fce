"""Shared fixtures of the cost-model tests: catalog H100, a one-node cluster, and a stage builder."""

from __future__ import annotations

import pytest

from simulator import catalog
from simulator.costmodel import build_stage_cost
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import Stage
from simulator.scenario import DTypes, Engine


@pytest.fixture
def h100():
    return catalog.get_gpu("h100-sxm")


@pytest.fixture
def node():
    return Cluster(node_groups=[NodeGroup(gpu="h100-sxm", nodes=2, gpus_per_node=8)])


@pytest.fixture
def make_stage(h100, node):
    def make(
        model_name,
        tp=1,
        ep=None,
        layers=None,
        dtypes=None,
        engine=None,
        first=True,
        last=True,
        **cells,
    ):
        model = catalog.get_model(model_name)
        dtypes, engine = dtypes or DTypes(), engine or Engine()
        stage = Stage(layers=layers or (0, model.num_layers), tp=tp, ep=ep, **cells)
        return build_stage_cost(model, stage, h100, node, dtypes, engine, first=first, last=last)

    return make
