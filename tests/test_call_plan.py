"""The measured call plan of the OpenVINO ResNet-152: which plans are tried, how the winner is chosen, that it is
measured once per machine and stored, and that a damaged or unwritable store never breaks a run."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from soccer_highlights.extract_features import call_plan
from soccer_highlights.extract_features.call_plan import MAX_CALL, CallPlan, candidates, choose, plan_for


class FakeNet:
    """A network whose cost per call is `fixed` seconds plus `per_frame` per frame, shared over `requests`."""

    def __init__(self, requests: int, fixed: float, per_frame: float, calls: list):
        self.requests, self.fixed, self.per_frame, self.calls = requests, fixed, per_frame, calls

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        time.sleep(self.fixed + self.per_frame * -(-len(x) // self.requests))
        return np.zeros((len(x), 4), np.float32)


def compile_with(costs: dict, calls: list):
    def compile_net(hint: str, requests: int):
        fixed, per_frame, optimal = costs[hint]
        return FakeNet(requests or optimal, fixed, per_frame, calls)

    return compile_net


def test_candidates_cover_both_hints_and_never_exceed_the_largest_call():
    assert candidates(1) == [("LATENCY", 1, 1), ("LATENCY", 1, 4), ("LATENCY", 1, 8)]
    two = candidates(2)
    assert ("THROUGHPUT", 2, 2) in two and ("THROUGHPUT", 2, 8) in two
    assert all(n <= MAX_CALL for _, _, n in candidates(16)) and ("THROUGHPUT", 16, 16) not in candidates(16)


def test_the_fastest_plan_wins_and_ties_go_to_throughput_with_the_largest_calls():
    measured = {("LATENCY", 1, 1): 10.0, ("LATENCY", 1, 4): 10.2, ("THROUGHPUT", 2, 2): 10.1}
    assert choose(measured) == CallPlan("THROUGHPUT", 2, 2, 10.1)  # all within 5 %: throughput
    measured[("THROUGHPUT", 2, 8)] = 9.8
    assert choose(measured) == CallPlan("THROUGHPUT", 2, 8, 9.8)  # still a tie: the largest calls
    measured[("LATENCY", 1, 8)] = 14.0
    assert choose(measured) == CallPlan("LATENCY", 1, 8, 14.0)  # a clear win stays a win


def test_throughput_is_chosen_where_it_wins_then_read_back_without_measuring(tmp_path, capsys):
    calls: list = []
    costs = {"LATENCY": (0.004, 0.004, 1), "THROUGHPUT": (0.004, 0.004, 4)}  # 4 requests share the frames
    plan = plan_for(tmp_path, "float32", compile_with(costs, calls), (2, 2, 3))
    assert plan.hint == "THROUGHPUT" and plan.requests == 4 and plan.frames == 8 and plan.fps > 0
    assert "measuring how to call" in capsys.readouterr().err
    stored = json.loads((tmp_path / call_plan.PLANS_NAME).read_text())
    (entry,) = stored.values()
    assert len(entry["measured"]) == len(candidates(4)) and entry["frames"] == 8

    def no_measuring(hint, requests):
        raise AssertionError("measured again")

    assert plan_for(tmp_path, "float32", no_measuring, (2, 2, 3)) == plan
    assert "measuring" not in capsys.readouterr().err
    costs = {"LATENCY": (0.0, 0.002, 1), "THROUGHPUT": (0.02, 0.002, 2)}  # another precision: its own plan
    other = plan_for(tmp_path, "bfloat16", compile_with(costs, calls), (2, 2, 3))
    assert other.hint == "LATENCY" and len(json.loads((tmp_path / call_plan.PLANS_NAME).read_text())) == 2


@pytest.mark.parametrize("damage", ["not json", '{"k": 1}', "[1, 2]"])
def test_a_damaged_store_is_measured_again_and_replaced(tmp_path, damage):
    (tmp_path / call_plan.PLANS_NAME).write_text(damage)
    calls: list = []
    plan = plan_for(
        tmp_path, "float32", compile_with({"LATENCY": (0, 0.001, 1), "THROUGHPUT": (0, 0.001, 2)}, calls), (1,)
    )
    assert calls and plan.frames >= 1
    assert call_plan.stored_plan(tmp_path, call_plan.machine_key("float32")) == plan


def test_an_implausible_stored_plan_is_not_trusted(tmp_path):
    key = call_plan.machine_key("float32")
    for bad in (
        {"hint": "FAST", "requests": 1, "frames": 4, "fps": 1},
        {"hint": "LATENCY", "requests": 1, "frames": 64, "fps": 1},
    ):
        (tmp_path / call_plan.PLANS_NAME).write_text(json.dumps({key: bad}))
        assert call_plan.stored_plan(tmp_path, key) is None


def test_an_unwritable_folder_keeps_the_plan_for_this_run(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / call_plan.PLANS_NAME).mkdir()  # a folder in the way: the store cannot be replaced
    calls: list = []
    plan = plan_for(
        folder, "float32", compile_with({"LATENCY": (0, 0.001, 1), "THROUGHPUT": (0, 0.001, 2)}, calls), (1,)
    )
    assert plan.frames >= 1 and "used for this run only" in capsys.readouterr().err


def test_openvino_resnet_calls_as_measured_and_extraction_records_it(tmp_path):
    """The real network: the default (no --frames_per_call) takes the plan stored beside the converted model
    (measured on the first run on this machine), and extraction.json records how ResNet was called."""
    from soccer_highlights.extract_features.video import FrameEmbedder

    net = FrameEmbedder("random", seed=0, runtime="openvino")
    plan = net.set_call_plan()
    assert call_plan.stored_plan(net.xml.parent, call_plan.machine_key("float32")) == plan
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    first = net(frames)
    assert net.set_call_plan(2) == CallPlan(frames=2) and net.plan == CallPlan(frames=2)  # given: no measuring
    np.testing.assert_allclose(net(frames), first, rtol=1e-4, atol=1e-4)
    assert net.set_call_plan(64).frames == MAX_CALL
