"""`apex emit` / `apex plan --emit`: launch files whose every flag is documented, sizes that match the plan,
P/D variants and a Dynamo graph, clear exits for plans an engine cannot express, and no overwritten user files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from planner.emit import dynamo
from planner.emit.commands import Command, parse_script
from planner.emit.emitter import ENGINES, emit_plan
from planner.emit.flag_table import all_tables, check_command, check_yaml_keys
from planner.placement_step import place_plan
from simulator.scenario import load_scenario
from tests.conftest import EXAMPLES

LLAMA70B = str(EXAMPLES / "llama-70b-h100.yaml")


def _scenario(**overrides) -> dict:
    """The llama-70b example as a dict, with fields replaced (a small workload keeps emits fast)."""
    data = yaml.safe_load(Path(LLAMA70B).read_text())
    data["workload"]["requests"] = 200
    data.update(overrides)
    return data


def _emit(tmp_path, data: dict | str, engines=ENGINES, name="out", model_id=None):
    sc = load_scenario(data)
    placement, why = place_plan(sc, sc.plan)
    assert placement is not None, why
    out = tmp_path / name
    result = emit_plan(sc, sc.plan, placement, engines=engines, out_dir=out, model_id=model_id)
    manifest = json.loads((out / "apex-emit.json").read_text())
    return result, manifest, out


def _commands(manifest: dict, name: str) -> list[Command]:
    return [Command.from_json(c) for c in manifest["commands"] if c["name"] == name]


def _check_all(manifest: dict, out: Path) -> None:
    """Every command and YAML document of an emit is documented, and the scripts run exactly those commands."""
    tables = all_tables()
    problems = [p for c in manifest["commands"] for p in check_command(Command.from_json(c), tables)]
    for doc in manifest["documents"]:
        parts = (
            dynamo.graph_sections(doc["data"]) if doc["tool"] == "dynamo" else [(doc["schema"], doc["data"])]
        )
        for schema, data in parts:
            problems += check_yaml_keys(doc["tool"], schema, data, tables)
    assert problems == []
    in_scripts = []
    for path in out.rglob("*.sh"):
        in_scripts += [(tool, name, argv, env) for tool, name, argv, env in parse_script(path.read_text())]
    graph = out / "dynamo" / "graph.yaml"
    if graph.exists():
        for svc in yaml.safe_load(graph.read_text())["spec"]["services"].values():
            c = svc["extraPodSpec"]["mainContainer"]
            in_scripts.append(("dynamo", None, c["command"] + c["args"], {}))
    manifest_argv = sorted(json.dumps(c["argv"]) for c in manifest["commands"])
    assert sorted(json.dumps(argv) for *_, argv, _ in in_scripts) == manifest_argv
    for tool, name, argv, env in in_scripts:
        if name is not None:
            match = [c for c in manifest["commands"] if c["argv"] == argv and c["name"] == name]
            assert match and match[0]["tool"] == tool and match[0]["env"] == env


def test_every_emitted_flag_is_in_the_documented_table(tmp_path):
    """llama-70b tp4 × 2: all four engines and the three benchmark tools, every flag and key documented."""
    result, manifest, out = _emit(tmp_path, _scenario())
    assert set(result.engines) == set(ENGINES) and result.skipped == {}
    _check_all(manifest, out)
    for path in out.rglob("*.sh"):
        assert os.access(path, os.X_OK)
    tools = {c["tool"] for c in manifest["commands"]}
    assert tools == {"vllm", "sglang", "trtllm", "dynamo", "genai-perf", "aiperf"}


def test_a_renamed_or_mistyped_flag_fails_loudly(tmp_path):
    """The check is not vacuous: an undocumented flag, a bad choice, a non-integer size and an unknown env var fail."""
    _, manifest, _ = _emit(tmp_path, _scenario(), engines=("vllm",))
    serve = _commands(manifest, "vllm serve")[0]
    assert check_command(serve) == []
    renamed = Command(serve.tool, serve.name, serve.program, (("--tensor-parallel", "4"),))
    assert "no documented flag --tensor-parallel" in check_command(renamed)[0]
    bad_choice = Command(serve.tool, serve.name, serve.program, (("--kv-cache-dtype", "int8"),))
    assert "not one of" in check_command(bad_choice)[0]
    not_int = Command(serve.tool, serve.name, serve.program, (("--tensor-parallel-size", "${TP}"),))
    assert "only str values may name a shell variable" in check_command(not_int)[0]
    negated = Command(serve.tool, serve.name, serve.program, (("--no-enable-chunked-prefill", None),))
    assert check_command(negated) == []
    env = Command(serve.tool, serve.name, serve.program, (), (("VLLM_PP_LAYER_SPLIT", "40,40"),))
    assert "not documented" in check_command(env)[0]
    dynamo_bad = Command(
        "dynamo", "python3 -m dynamo.vllm", ("python3", "-m", "dynamo.vllm"), (("--is-decode", None),)
    )
    assert check_command(dynamo_bad)


def test_sizes_and_gpus_match_the_plan(tmp_path):
    """tp × pp × dp = the replica's GPUs on every engine, CUDA devices and ports follow the placement."""
    result, manifest, out = _emit(tmp_path, _scenario())
    replicas = {r["id"]: r for r in manifest["replicas"]}
    assert [r["gpus"] for r in replicas.values()] == [4, 4]
    serves = _commands(manifest, "vllm serve")
    assert len(serves) == 2
    used = set()
    for cmd, rep in zip(serves, replicas.values(), strict=True):
        tp = int(cmd.option("--tensor-parallel-size"))
        pp = int(cmd.option("--pipeline-parallel-size") or 1)
        dp = int(cmd.option("--data-parallel-size") or 1)
        assert tp * pp * dp == rep["gpus"]
        devices = dict(cmd.env)["CUDA_VISIBLE_DEVICES"].split(",")
        assert devices == [str(g) for g in rep["nodes"][0]["gpus"]]
        assert int(cmd.option("--port")) == rep["port"]
        used |= set(devices)
    assert used == {str(g) for g in range(8)}
    for cmd, rep in zip(
        _commands(manifest, "python -m sglang.launch_server"), replicas.values(), strict=True
    ):
        assert int(cmd.option("--tp-size")) * int(cmd.option("--pp-size") or 1) == rep["gpus"]
        assert cmd.option("--chunked-prefill-size") == "8192" and cmd.option("--mem-fraction-static") == "0.9"
    for cmd, rep in zip(_commands(manifest, "trtllm-serve"), replicas.values(), strict=True):
        assert int(cmd.option("--tp_size")) * int(cmd.option("--pp_size")) == rep["gpus"]
        assert cmd.option("--max_batch_size") == "256" and cmd.option("--max_num_tokens") == "8192"
    for path in (out / "kubernetes").glob("*.yaml"):
        assert "&id" not in path.read_text()  # plain YAML, no anchors
        deployments = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Deployment"]
        assert len(deployments) == 2
        for d in deployments:
            spec = d["spec"]["template"]["spec"]
            assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
            terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            keys = {e["key"]: e["values"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
            assert keys == {"apex.dev/node-group": ["main"], "apex.dev/node": ["0"]}
    graph = yaml.safe_load((out / "dynamo" / "graph.yaml").read_text())
    worker = graph["spec"]["services"]["VllmWorkerG0"]
    assert worker["replicas"] == 2 and worker["resources"]["limits"]["gpu"] == "4"
    args = worker["extraPodSpec"]["mainContainer"]["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"


def test_benchmark_replays_the_simulated_requests(tmp_path):
    """aiperf traces hold every request once (ms arrivals); vllm bench splits count and rate over the endpoints."""
    _, manifest, out = _emit(tmp_path, _scenario())
    requests = [json.loads(line) for line in (out / "bench" / "requests.jsonl").read_text().splitlines()]
    assert len(requests) == 200
    traced = []
    for path in sorted((out / "bench").glob("workload-ep*.jsonl")):
        traced += [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((t["timestamp"], t["input_length"], t["output_length"]) for t in traced) == sorted(
        (round(r["arrival_s"] * 1000), r["input_tokens"], r["output_tokens"]) for r in requests
    )
    benches = _commands(manifest, "vllm bench serve")
    assert sum(int(c.option("--num-prompts")) for c in benches) == 200
    assert sum(float(c.option("--request-rate")) for c in benches) == pytest.approx(6.0)
    assert {c.option("--base-url") for c in benches} == set(manifest["endpoints"])
    aiperf = _commands(manifest, "aiperf profile")
    assert [c.option("--input-file") for c in aiperf] == ["workload-ep0.jsonl", "workload-ep1.jsonl"]


def test_disaggregated_plan_writes_pd_variants_and_a_dynamo_graph(tmp_path):
    """prefill tp4 + decode tp4: NIXL connector on vLLM, SGLang P/D modes and router, TensorRT-LLM context and
    generation servers, a Dynamo graph with a prefill worker."""
    plan = {
        "replicas": [
            {"count": 1, "role": "prefill", "stages": [{"layers": [0, 80], "tp": 4}]},
            {"count": 1, "role": "decode", "stages": [{"layers": [0, 80], "tp": 4}]},
        ]
    }
    result, manifest, out = _emit(tmp_path, _scenario(plan=plan))
    assert set(result.engines) == set(ENGINES)
    _check_all(manifest, out)
    assert manifest["endpoints"] == ["http://${APEX_HOST_main_0}:8000"]
    for cmd in _commands(manifest, "vllm serve"):
        assert json.loads(cmd.option("--kv-transfer-config")) == {
            "kv_connector": "NixlConnector",
            "kv_role": "kv_both",
        }
    ports = [dict(c.env)["VLLM_NIXL_SIDE_CHANNEL_PORT"] for c in _commands(manifest, "vllm serve")]
    assert len(set(ports)) == 2
    servers = _commands(manifest, "python -m sglang.launch_server")
    assert [s.option("--disaggregation-mode") for s in servers] == ["prefill", "decode"]
    router = _commands(manifest, "python -m sglang_router.launch_router")[0]
    assert router.has("--pd-disaggregation")
    assert router.option("--prefill") == ("http://${APEX_HOST_main_0}:8001", "9000")
    assert router.option("--decode") == "http://${APEX_HOST_main_0}:8002"
    assert servers[0].option("--disaggregation-bootstrap-port") == "9000"
    disagg = next(d for d in manifest["documents"] if d["schema"] == "disaggregated_config")["data"]
    assert disagg["context_servers"] == {"num_instances": 1, "urls": ["${APEX_HOST_main_0}:8001"]}
    assert disagg["generation_servers"] == {"num_instances": 1, "urls": ["${APEX_HOST_main_0}:8002"]}
    extra = yaml.safe_load((out / "trtllm" / "g0-prefill-r0.extra-llm-api.yaml").read_text())
    assert extra["cache_transceiver_config"] == {"backend": "DEFAULT"} and extra["disable_overlap_scheduler"]
    graph = yaml.safe_load((out / "dynamo" / "graph.yaml").read_text())["spec"]["services"]
    assert graph["VllmPrefillWorkerG0"]["subComponentType"] == "prefill"
    assert "--is-prefill-worker" in graph["VllmPrefillWorkerG0"]["extraPodSpec"]["mainContainer"]["args"]
    assert graph["VllmDecodeWorkerG1"]["subComponentType"] == "decode"
    assert "--is-prefill-worker" not in graph["VllmDecodeWorkerG1"]["extraPodSpec"]["mainContainer"]["args"]
    assert any("no prefill/decode proxy" in w for w in result.warnings)


def test_uneven_pipeline_split_exits_2_on_trtllm_and_is_exact_elsewhere(tmp_path, run_cli):
    """layers 41/39: vLLM and SGLang carry the split in their PP partition variable; TensorRT-LLM cannot."""
    plan = {
        "replicas": [{"count": 1, "stages": [{"layers": [0, 41], "tp": 4}, {"layers": [41, 80], "tp": 4}]}]
    }
    data = _scenario(plan=plan)
    result, manifest, _ = _emit(tmp_path, data)
    assert "trtllm" in result.skipped and "unevenly" in result.skipped["trtllm"]
    serve = _commands(manifest, "vllm serve")[0]
    assert (
        dict(serve.env)["VLLM_PP_LAYER_PARTITION"] == "41,39"
        and serve.option("--pipeline-parallel-size") == "2"
    )
    sgl = _commands(manifest, "python -m sglang.launch_server")[0]
    assert dict(sgl.env)["SGLANG_PP_LAYER_PARTITION"] == "41,39"
    path = tmp_path / "uneven.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli("emit", str(path), "--engine", "trtllm", "--out", str(tmp_path / "t"))
    assert code == 2 and "trtllm cannot express this plan" in err and "unevenly" in err
    assert not (tmp_path / "t").exists()


def test_moe_split_vllm_cannot_say_exits_2_and_sglang_expresses(tmp_path):
    """Mixtral-8x7B ffn tp2 × ep4: vLLM's EP spans all GPUs (exit 2); SGLang says --tp-size 8 --ep-size 4."""
    data = {
        "model": "mixtral-8x7b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8},
        "workload": {
            "requests": 50,
            "arrival": {"process": "poisson", "rate": 2.0},
            "input_tokens": {"dist": "fixed", "value": 512},
            "output_tokens": {"dist": "fixed", "value": 64},
        },
        "plan": {
            "replicas": [{"stages": [{"layers": [0, 32], "attention": {"tp": 8}, "ffn": {"tp": 2, "ep": 4}}]}]
        },
    }
    with pytest.raises(Exception, match="vllm cannot express this plan: .*tp2 × ep4"):
        _emit(tmp_path, data, engines=("vllm",))
    _, manifest, _ = _emit(tmp_path, data, engines=("sglang",), name="sgl")
    sgl = _commands(manifest, "python -m sglang.launch_server")[0]
    assert (sgl.option("--tp-size"), sgl.option("--ep-size")) == ("8", "4")
    data["plan"] = {
        "replicas": [{"stages": [{"layers": [0, 32], "attention": {"tp": 2, "dp": 4}, "ffn": {"ep": 8}}]}]
    }
    _, manifest, _ = _emit(tmp_path, data, engines=("vllm", "sglang"), name="dp")
    serve = _commands(manifest, "vllm serve")[0]
    assert (serve.option("--tensor-parallel-size"), serve.option("--data-parallel-size")) == ("2", "4")
    assert serve.has("--enable-expert-parallel")
    sgl = _commands(manifest, "python -m sglang.launch_server")[0]
    assert (
        sgl.has("--enable-dp-attention") and sgl.option("--dp-size") == "4" and sgl.option("--tp-size") == "8"
    )


def test_multi_node_replica_uses_ray_on_vllm_and_node_ranks_on_sglang(tmp_path):
    """Llama-3.1-405B bf16 tp8 × pp2 over two nodes: Ray head/worker/serve steps, SGLang --nnodes 2, no TRT-LLM."""
    data = {
        "model": "llama-3.1-405b",
        "cluster": {"gpu": "h100-sxm", "nodes": 2, "gpus_per_node": 8},
        "workload": {
            "requests": 20,
            "arrival": {"process": "poisson", "rate": 1.0},
            "input_tokens": {"dist": "fixed", "value": 256},
            "output_tokens": {"dist": "fixed", "value": 32},
        },
        "plan": "tp=8,pp=2",
    }
    result, manifest, out = _emit(tmp_path, data)
    _check_all(manifest, out)
    assert "multi-node" in result.skipped["trtllm"]
    assert sorted(p.name for p in (out / "vllm").iterdir()) == [
        "g0-colocated-r0-ray-head.sh",
        "g0-colocated-r0-ray-node1.sh",
        "g0-colocated-r0.sh",
    ]
    serve = _commands(manifest, "vllm serve")[0]
    assert serve.option("--distributed-executor-backend") == "ray"
    assert int(serve.option("--tensor-parallel-size")) * int(serve.option("--pipeline-parallel-size")) == 16
    ranks = [c.option("--node-rank") for c in _commands(manifest, "python -m sglang.launch_server")]
    assert ranks == ["0", "1"]
    hosts = (out / "hosts.env").read_text()
    assert ":?set APEX_HOST_main_1 to the address of main/node1" in hosts
    assert any("multi-node replicas need" in w for w in result.warnings)


def test_out_dir_with_user_files_is_refused_before_the_search(tmp_path, run_cli, monkeypatch):
    """`apex plan --emit DIR` with a user's file in DIR exits 2 without searching; nothing is touched."""
    import planner.plan_api

    def no_search(*args, **kwargs):
        raise AssertionError("the search ran")

    monkeypatch.setattr(planner.plan_api, "plan", no_search)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    code, _, err = run_cli("plan", LLAMA70B, "--emit", str(user))
    assert code == 2 and "--emit" in err and "not empty" in err
    assert (user / "notes.txt").read_text() == "keep me" and len(list(user.iterdir())) == 1


def test_an_earlier_emit_is_replaced_but_user_files_in_it_survive(tmp_path, run_cli):
    """Re-emitting replaces what the earlier emit wrote, keeps a user's extra file, refuses a colliding one."""
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(_scenario()))
    out = tmp_path / "out"
    assert run_cli("emit", str(path), "--out", str(out))[0] == 0
    assert (out / "sglang").is_dir()
    (out / "my-notes.md").write_text("mine")
    code, _, _ = run_cli("emit", str(path), "--out", str(out), "--engine", "vllm")
    assert code == 0
    assert (out / "my-notes.md").read_text() == "mine"
    assert not list((out / "sglang").glob("*.sh"))
    manifest = json.loads((out / "apex-emit.json").read_text())
    assert set(manifest["engines"]) == {"vllm"}
    (out / "sglang" / "g0-colocated-r0.sh").write_text("# the user's own script\n")
    code, _, err = run_cli("emit", str(path), "--out", str(out), "--engine", "sglang")
    assert code == 2 and "was not written by the earlier emit" in err
    assert (out / "sglang" / "g0-colocated-r0.sh").read_text() == "# the user's own script\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--engine", "vllm,foo"), "unknown engine foo"),
        (("--engine", ""), "unknown engine"),
    ],
)
def test_bad_engine_names_exit_2(tmp_path, run_cli, args, needle):
    code, _, err = run_cli("emit", LLAMA70B, "--out", str(tmp_path / "x"), *args)
    assert code == 2 and needle in err and "--engine" in err


def test_a_file_without_a_plan_exits_2(tmp_path, run_cli):
    data = _scenario()
    del data["plan"]
    path = tmp_path / "noplan.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli("emit", str(path), "--out", str(tmp_path / "x"))
    assert code == 2 and "has no plan" in err and str(path) in err


def test_plan_emit_writes_launch_files_for_the_best_plan(tmp_path, run_cli):
    """`apex plan SCENARIO --emit DIR` on a tiny scenario: launch files of the plan the search picked."""
    from tests.planner.test_plan_cli import _register_plan, write_scenario

    _register_plan()
    out = tmp_path / "emit"
    code, stdout, _ = run_cli(
        "plan", write_scenario(tmp_path), "--emit", str(out), "--workers", "1", "--json"
    )
    assert code == 0
    best = json.loads(stdout)["best"]
    manifest = json.loads((out / "apex-emit.json").read_text())
    emitted = load_scenario(str(out / "plan.yaml")).plan
    searched = load_scenario(write_scenario(tmp_path)).with_plan(best["plan_spec"]).plan
    assert emitted.label() == searched.label() == manifest["plan"]
    assert sum(r["gpus"] for r in manifest["replicas"]) == searched.num_gpus
    assert (out / "vllm").is_dir() and (out / "bench" / "aiperf.sh").is_file()


@pytest.mark.slow
def test_plan_emit_on_the_llama_70b_example(tmp_path, run_cli):
    """The issue's done-when: vLLM, SGLang and TRT-LLM launch files and benchmark scripts for the example."""
    out = tmp_path / "out"
    code, _, err = run_cli("plan", LLAMA70B, "--emit", str(out), "--workers", "1")
    assert code == 0, err
    manifest = json.loads((out / "apex-emit.json").read_text())
    _check_all(manifest, out)
    for engine in ("vllm", "sglang", "trtllm"):
        assert list((out / engine).glob("*.sh")), engine
    for tool in ("vllm-bench", "genai-perf", "aiperf"):
        assert (out / "bench" / f"{tool}.sh").is_file()


def test_a_plan_no_engine_can_express_exits_2_with_every_reason(tmp_path, run_cli):
    """Attention dp on a dense model: vLLM, SGLang and TensorRT-LLM each refuse, and `all` says why for each."""
    plan = {
        "replicas": [{"stages": [{"layers": [0, 80], "attention": {"tp": 2, "dp": 2}, "ffn": {"tp": 4}}]}]
    }
    path = tmp_path / "adp.yaml"
    path.write_text(yaml.safe_dump(_scenario(plan=plan)))
    code, _, err = run_cli("emit", str(path), "--out", str(tmp_path / "x"))
    assert code == 2 and "no engine can express this plan" in err
    for engine in ENGINES:
        assert f"{engine}:" in err
    assert err.count("dense model") >= 3
    assert not (tmp_path / "x").exists()


def test_closed_loop_benchmark_runs_at_the_concurrency(tmp_path):
    """A closed-loop workload: every tool at the concurrency split over the endpoints, no fixed schedule, no
    arrival times written; the think time it cannot replay is a warning."""
    data = _scenario()
    data["workload"]["arrival"] = {"process": "closed", "concurrency": 24, "think_time_s": 0.5}
    result, manifest, out = _emit(tmp_path, data)
    _check_all(manifest, out)
    vllm = _commands(manifest, "vllm bench serve")
    assert [c.option("--max-concurrency") for c in vllm] == ["12", "12"]
    assert {c.option("--request-rate") for c in vllm} == {"inf"}
    assert [c.option("--concurrency") for c in _commands(manifest, "genai-perf profile")] == ["12", "12"]
    aiperf = _commands(manifest, "aiperf profile")
    assert [c.option("--concurrency") for c in aiperf] == ["12", "12"]
    assert all("--fixed-schedule" not in c.argv() for c in aiperf)
    rows = [json.loads(line) for line in (out / "bench" / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 200 and {r["arrival_s"] for r in rows} == {None}
    assert all("timestamp" not in json.loads(line) for line in (out / "bench" / "workload-ep0.jsonl").open())
    assert any("think time of 0.5 s is not replayed" in w for w in manifest["warnings"])
