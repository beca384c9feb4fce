"""`apex emit` for prefix caching and speculative decoding: each engine gets the documented flags for the setting
the plan was simulated with, the scripts run exactly the manifest's commands, and a method whose drafts come from
a separate checkpoint exits 2 naming `engine.speculative.draft_model` when none is given."""

from __future__ import annotations

import json

import pytest
import yaml

from simulator.errors import InputError
from tests.planner.test_emit import _check_all, _commands, _emit, _scenario

SGLANG = "python -m sglang.launch_server"
EAGLE3_HEAD = "yuhuili/EAGLE3-LLaMA3.3-Instruct-70B"


def _engine(**engine) -> dict:
    return _scenario(engine={"kind": "vllm-v1", **engine})


def _extra(out, manifest) -> list[dict]:
    return [d["data"] for d in manifest["documents"] if d["schema"] == "extra_llm_api_options"]


def _worker_args(out) -> list[list[str]]:
    """The argument lists of the Dynamo graph's vLLM workers."""
    graph = yaml.safe_load((out / "dynamo" / "graph.yaml").read_text())
    args = [svc["extraPodSpec"]["mainContainer"]["args"] for svc in graph["spec"]["services"].values()]
    return [a for a in args if "--tensor-parallel-size" in a]


@pytest.mark.parametrize("on", [True, False])
def test_prefix_caching_is_written_explicitly_on_every_engine(tmp_path, on):
    """On: vLLM --enable-prefix-caching, SGLang's radix cache left on, TensorRT-LLM enable_block_reuse true;
    off: --no-enable-prefix-caching, --disable-radix-cache, enable_block_reuse false. Every flag documented."""
    result, manifest, out = _emit(tmp_path, _engine(prefix_caching=on))
    assert result.skipped == {}
    _check_all(manifest, out)
    for serve in _commands(manifest, "vllm serve"):
        assert (
            serve.has("--enable-prefix-caching") is on and serve.has("--no-enable-prefix-caching") is not on
        )
    sglang = _commands(manifest, SGLANG)
    assert sglang and all(c.has("--disable-radix-cache") is not on for c in sglang)
    extras = _extra(out, manifest)
    assert extras and all(e["kv_cache_config"]["enable_block_reuse"] is on for e in extras)
    workers = _worker_args(out)
    assert workers and all(("--enable-prefix-caching" in a) is on for a in workers)


def test_engine_default_prefix_caching_is_the_simulated_one(tmp_path):
    """No prefix_caching given: the engine kind's default the simulator used (vLLM V0 off) is what is emitted."""
    _, manifest, _ = _emit(tmp_path, _scenario(engine={"kind": "vllm-v0"}), engines=("vllm",))
    assert _commands(manifest, "vllm serve")[0].has("--no-enable-prefix-caching")


def test_eagle_speculation_on_every_engine(tmp_path):
    """EAGLE-3 head, k = 3: vLLM's --speculative-config JSON, SGLang's EAGLE3 chain (steps 3, topk 1, 4 draft
    tokens), TensorRT-LLM's speculative_config, the Dynamo workers' vLLM arguments; read back from the scripts."""
    spec = {"method": "eagle", "num_tokens": 3, "draft_model": EAGLE3_HEAD}
    result, manifest, out = _emit(tmp_path, _engine(speculative=spec))
    assert result.skipped == {}
    _check_all(manifest, out)
    expected = {"method": "eagle3", "model": EAGLE3_HEAD, "num_speculative_tokens": 3}
    serves = _commands(manifest, "vllm serve")
    assert serves and all(json.loads(c.option("--speculative-config")) == expected for c in serves)
    script = (out / "vllm" / "g0-colocated-r0.sh").read_text()
    assert "--speculative-config" in script and EAGLE3_HEAD in script
    for c in _commands(manifest, SGLANG):
        assert c.option("--speculative-algorithm") == "EAGLE3"
        assert c.option("--speculative-draft-model-path") == EAGLE3_HEAD
        assert (c.option("--speculative-num-steps"), c.option("--speculative-eagle-topk")) == ("3", "1")
        assert c.option("--speculative-num-draft-tokens") == "4"
    for extra in _extra(out, manifest):
        assert extra["speculative_config"] == {
            "decoding_type": "Eagle",
            "max_draft_len": 3,
            "speculative_model_dir": EAGLE3_HEAD,
        }
    for args in _worker_args(out):
        assert json.loads(args[args.index("--speculative-config") + 1]) == expected
    assert not any("EAGLE-3" in w for w in result.warnings)


def test_an_eagle_1_head_is_eagle_on_vllm_and_sglang_and_a_warning_on_trtllm(tmp_path):
    spec = {"method": "eagle", "num_tokens": 2, "draft_model": "yuhuili/EAGLE-LLaMA3-Instruct-70B"}
    result, manifest, out = _emit(tmp_path, _engine(speculative=spec), engines=("vllm", "sglang", "trtllm"))
    assert (
        json.loads(_commands(manifest, "vllm serve")[0].option("--speculative-config"))["method"] == "eagle"
    )
    assert _commands(manifest, SGLANG)[0].option("--speculative-algorithm") == "EAGLE"
    assert any("trtllm" in w and "EAGLE-3" in w for w in result.warnings)


def test_mtp_uses_the_target_model(tmp_path):
    """mtp: vLLM method mtp without a model, SGLang NEXTN reading the target's MTP layers, TensorRT-LLM MTP."""
    _, manifest, out = _emit(tmp_path, _engine(speculative={"method": "mtp", "num_tokens": 2}))
    _check_all(manifest, out)
    serve = _commands(manifest, "vllm serve")[0]
    assert json.loads(serve.option("--speculative-config")) == {"method": "mtp", "num_speculative_tokens": 2}
    sgl = _commands(manifest, SGLANG)[0]
    assert sgl.option("--speculative-algorithm") == "NEXTN"
    assert sgl.option("--speculative-draft-model-path") == sgl.option("--model-path")
    assert sgl.option("--speculative-num-draft-tokens") == "3"
    extra = _extra(out, manifest)[0]
    assert extra["speculative_config"] == {"decoding_type": "MTP", "num_nextn_predict_layers": 2}


def test_a_draft_model_is_skipped_on_vllm_and_written_for_sglang_and_trtllm(tmp_path, run_cli):
    """vLLM 0.11 (and Dynamo's vLLM workers) refuse draft-model speculation: skipped with the reason under `all`,
    exit 2 with --engine vllm; SGLang runs it as STANDALONE, TensorRT-LLM as DraftTarget."""
    spec = {"method": "draft", "num_tokens": 4, "draft_cost": 0.1, "draft_model": "meta-llama/Llama-3.2-1B"}
    data = _engine(speculative=spec)
    result, manifest, out = _emit(tmp_path, data)
    assert set(result.skipped) == {"vllm", "dynamo"}
    assert all("draft-model speculative decoding" in why for why in result.skipped.values())
    _check_all(manifest, out)
    sgl = _commands(manifest, SGLANG)[0]
    assert sgl.option("--speculative-algorithm") == "STANDALONE"
    assert sgl.option("--speculative-draft-model-path") == "meta-llama/Llama-3.2-1B"
    extra = _extra(out, manifest)[0]
    assert extra["speculative_config"] == {
        "decoding_type": "DraftTarget",
        "max_draft_len": 4,
        "speculative_model_dir": "meta-llama/Llama-3.2-1B",
    }
    assert extra["disable_overlap_scheduler"] is True
    path = tmp_path / "draft.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli("emit", str(path), "--engine", "vllm", "--out", str(tmp_path / "v"))
    assert code == 2 and "vllm cannot express this plan" in err and "arg_utils.py:1486" in err


@pytest.mark.parametrize("method", ["eagle", "draft"])
def test_a_missing_draft_checkpoint_exits_2_naming_the_field(tmp_path, run_cli, method):
    """No placeholder: `apex emit` and `apex plan --emit` (before its search) exit 2 naming the field."""
    spec = {"method": method, "num_tokens": 3, **({"draft_cost": 0.1} if method == "draft" else {})}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_engine(speculative=spec)))
    code, _, err = run_cli("emit", str(path), "--out", str(tmp_path / "x"))
    assert code == 2 and "engine.speculative.draft_model" in err and str(path) in err
    assert not (tmp_path / "x").exists()
    code, _, err = run_cli("plan", str(path), "--emit", str(tmp_path / "y"), "--workers", "1")
    assert code == 2 and "engine.speculative.draft_model" in err
    assert not (tmp_path / "y").exists()


def test_mtp_with_a_draft_model_is_refused(tmp_path):
    with pytest.raises(InputError, match="mtp drafts with the target"):
        _emit(tmp_path, _engine(speculative={"method": "mtp", "num_tokens": 1, "draft_model": "x/y"}))


def test_speculation_switched_off_writes_no_speculative_flags(tmp_path):
    """`enabled: false` (what `apex plan` writes when the plan it picked runs without speculation): no flags and no
    draft checkpoint needed."""
    spec = {"method": "eagle", "num_tokens": 3, "enabled": False}
    result, manifest, out = _emit(tmp_path, _engine(speculative=spec))
    assert result.skipped == {}
    assert not any(c.has("--speculative-config") for c in _commands(manifest, "vllm serve"))
    assert not any(c.has("--speculative-algorithm") for c in _commands(manifest, SGLANG))
    assert all("speculative_config" not in e for e in _extra(out, manifest))
