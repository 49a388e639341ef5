"""The GPU sharing plan: configs whose shares or memory fractions cannot work are refused at deploy
time with the deployments and numbers named, and the plan command prints what fits on H100 nodes."""

from __future__ import annotations

from types import FunctionType
from typing import cast

import pytest
import torch
import yaml
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

from deployments.app import build_app
from deployments.app_args import AppArgs, load_app_args
from deployments.gpu_plan import NodeShape, describe_plan, main, pack
from deployments.gpu_shares import StageGpu
from pipeline.devices import cap_cuda_memory
from pipeline.settings import memory_fraction, serve_config_args


def production_args() -> dict:
    return serve_config_args(ROOT / "serve_config.yaml")


def refused(args: dict) -> str:
    with pytest.raises(ValidationError) as info:  # what `serve deploy` runs; a def is a FunctionType
        call_user_app_builder_with_args_if_necessary(cast(FunctionType, build_app), args)
    return str(info.value)


def test_production_plan_gives_each_replica_its_share_of_memory():
    stages = {s.stage: s for s in load_app_args(ROOT / "serve_config.yaml").gpu_stages()}
    assert stages["asr"].num_gpus + stages["postprocess"].num_gpus <= 1.0
    assert stages["asr"].memory_fraction == 0.5 and stages["asr"].memory_kind == "torch cap"
    assert stages["postprocess"].memory_fraction == 0.45, "vLLM: 0.9 margin x 0.5 share"
    assert stages["ingress"].memory_fraction is None and stages["preprocess"].num_gpus == 0


def test_shares_of_replicas_sharing_a_gpu_above_one_are_refused():
    args = production_args()
    args["deployments"]["asr"]["ray_actor_options"]["num_gpus"] = 0.6
    message = refused(args)
    assert "deployments.share_gpu" in message and "1.1 (asr 0.6 + postprocess 0.5)" in message


def test_vllm_memory_beyond_its_share_is_refused():
    args = production_args()
    args["llm"]["gpu_memory_fraction"] = 0.8
    message = refused(args)
    assert "deployments.postprocess: vLLM's gpu_memory_utilization 0.8" in message
    assert "num_gpus share 0.5" in message and "llm.gpu_memory_fraction" in message


def test_torch_memory_cap_beyond_its_share_is_refused():
    args = production_args()
    args["asr"]["gpu_memory_fraction"] = 0.7
    message = refused(args)
    assert "deployments.asr: its torch memory cap 0.7 (asr.gpu_memory_fraction)" in message
    assert "share 0.5" in message


def test_every_problem_is_named_at_once():
    args = production_args()
    args["deployments"]["asr"]["ray_actor_options"]["num_gpus"] = 1.5
    args["deployments"]["postprocess"]["ray_actor_options"]["num_gpus"] = 0
    message = refused(args)
    assert "num_gpus 1.5 is above 1 and not whole" in message
    assert "'vllm', which needs a GPU" in message
    assert "lists asr, whose num_gpus is 1.5" in message and "lists postprocess" in message


def test_the_app_args_refuse_the_plan_however_they_are_read(tmp_path):
    args = production_args()
    args["asr"]["gpu_memory_fraction"] = 0.7
    args["deployments"]["postprocess"]["ray_actor_options"]["num_gpus"] = 0.6
    with pytest.raises(ValidationError) as direct:
        AppArgs.model_validate(args)
    [error] = direct.value.errors()  # one error, naming both problems
    assert "asr.gpu_memory_fraction" in error["msg"] and "add up to 1.1" in error["msg"]
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump({"applications": [{"args": args}]}))
    with pytest.raises(ValidationError) as loaded:
        load_app_args(path)
    assert loaded.value.errors()[0]["msg"] == error["msg"]


def test_memory_fractions_within_the_shares_deploy():
    args = production_args()
    args["asr"]["gpu_memory_fraction"] = 0.3
    args["llm"]["gpu_memory_fraction"] = 0.5
    app = call_user_app_builder_with_args_if_necessary(build_app, args)
    assert app is not None


def test_plan_for_one_and_eight_h100(capsys):
    assert main([str(ROOT / "serve_config.yaml"), "--node", "1xH100-80GB", "--node", "8xH100-80GB:192"]) == 0
    out = capsys.readouterr().out
    one, eight = out.split("Node 1xH100-80GB")[1].split("Node 8xH100-80GB")
    for block, gpus in ((one, 1), (eight, 8)):
        asr = next(line for line in block.splitlines() if line.strip().startswith("asr"))
        llm = next(line for line in block.splitlines() if line.strip().startswith("postprocess"))
        assert "0.50 of GPU = 40.0 GB (torch cap)" in asr
        assert "0.45 of GPU = 36.0 GB (vLLM utilization)" in llm
        # Alone, two half-GPU replicas per GPU; shared, one set of asr + postprocess per GPU.
        assert asr.split()[-3:] == [str(2 * gpus), str(gpus), "1..8"]
    assert "max replicas (8 asr + 8 postprocess): 8 nodes, GPU shares reserved: 8 of 8" in one
    assert "max replicas (8 asr + 8 postprocess): 1 node, GPU shares reserved: 8 of 8" in eight
    assert "min replicas (1 asr + 1 postprocess): 1 node, GPU shares reserved: 1 of 8" in eight


def test_plan_command_lists_the_problems_and_fails(tmp_path, capsys):
    raw = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    raw["applications"][0]["args"]["llm"]["gpu_memory_fraction"] = 0.9  # the file as a user edits it
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main([str(path)]) == 1
    assert "vLLM's gpu_memory_utilization 0.9" in capsys.readouterr().err


def test_cpu_limits_replicas_per_node():
    args = load_app_args(ROOT / "serve_config.yaml")
    text = describe_plan(args, [NodeShape.parse("8xH100-80GB:12")])
    asr = next(line for line in text.splitlines() if line.strip().startswith("asr"))
    assert asr.split()[-3:] == ["6", "3", "1..8"], "12 CPUs: 6 asr alone (2 CPUs each), 3 sets of 4"


@pytest.mark.parametrize("text", ["8H100-80GB", "0xH100-80GB", "8xH100", "8xH100-80GB:"])
def test_bad_node_shape_is_explained(text):
    with pytest.raises(ValueError, match="COUNTxGPU-MEMORYGB"):
        NodeShape.parse(text)


shares = st.sampled_from([0.1, 0.2, 0.25, 0.3, 1 / 3, 0.4, 0.5, 0.6, 0.75, 1.0, 2.0])


@settings(max_examples=200, deadline=None)
@given(a=shares, b=shares, na=st.integers(0, 12), nb=st.integers(0, 12), gpus=st.integers(1, 8))
def test_packing_never_puts_more_than_one_gpu_on_a_gpu(a, b, na, nb, gpus):
    stages = [StageGpu("asr", a, 1, None, "-", 0, na), StageGpu("postprocess", b, 1, None, "-", 0, nb)]
    shape = NodeShape(gpus, "X", 80)
    nodes = pack(stages, {"asr": na, "postprocess": nb}, shape, ["asr", "postprocess"])
    if max(a, b) > gpus:
        assert nodes is None or (a > gpus and na == 0) or (b > gpus and nb == 0)
        return
    assert nodes is not None
    assert sum(n.replicas.get("asr", 0) for n in nodes) == na
    assert sum(n.replicas.get("postprocess", 0) for n in nodes) == nb
    assert all(used <= 1 for n in nodes for used in n.gpus)
    # No more nodes than GPU shares need, rounded up per node, plus one for packing waste.
    demand = na * a + nb * b
    assert len(nodes) <= max(1, -(-demand // gpus)) * 2 + 1


def test_memory_fraction_follows_the_share_unless_set():
    assert memory_fraction(0.5, None) == 0.5
    assert memory_fraction(0.5, None, margin=0.9) == 0.45
    assert memory_fraction(2.0, None) == 1.0, "each of its whole GPUs"
    assert memory_fraction(0.5, 0.3) == 0.3
    assert memory_fraction(None, None) is None and memory_fraction(0.0, None) is None


def test_cuda_memory_cap_is_applied_on_cuda_only(monkeypatch):
    # No GPU here: torch's setter is replaced to see what a CUDA replica would call.
    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    assert cap_cuda_memory(torch.device("cpu"), 0.5) is None and calls == []
    assert cap_cuda_memory(torch.device("cuda"), None) is None and calls == []
    assert cap_cuda_memory(torch.device("cuda"), 0.45) == 0.45
    assert calls == [(0.45, torch.device("cuda"))]
