"""Every workflows/*.json is a UI-format graph the ComfyUI frontend loads and the server
accepts: node types exist (our pack, or the core node list recorded from a real host),
links join matching types, required inputs are connected and widget values fit."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "comfyui"))
from make_workflows import BUILDERS  # noqa: E402
from workflow_tools import (REPO, check_workflow, core_object_info, pack_object_info, ui_to_api,  # noqa: E402
                            widget_slots)

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
INFO = {**core_object_info(), **pack_object_info()}


def load(name: str) -> dict:
    return json.loads((REPO / "workflows" / f"{name}.json").read_text())


def test_the_eight_workflows_exist():
    assert {p.stem for p in WORKFLOWS} == set(BUILDERS) and len(BUILDERS) == 8


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid(path):
    ui = json.loads(path.read_text())
    assert check_workflow(ui, INFO) == []
    note = next(n for n in ui["nodes"] if n["type"] in ("Note", "MarkdownNote"))
    assert len(note["widgets_values"][0]) > 150  # explains what to set and which files are needed


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_workflow_file_is_what_the_builder_makes(name):
    """workflows/*.json are generated: edit make_workflows.py and rerun it, not the JSON."""
    assert BUILDERS[name](INFO) == load(name)


def test_core_node_list_is_recorded_from_a_host():
    core = core_object_info()
    for name in ("LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo", "CLIPLoader", "KSampler"):
        assert name in core
    assert core["GetVideoComponents"]["output"] == ["IMAGE", "AUDIO", "FLOAT"]
    assert core["CreateVideo"]["input"]["required"]["fps"][0] == "FLOAT"
    assert Path(REPO / "tests" / "data" / "core_object_info.json").stat().st_size < 50_000


def test_paper_pipeline_runs_the_stages_in_order():
    ui = load("paper_pipeline")
    types = [n["type"] for n in sorted(ui["nodes"], key=lambda n: n["order"])]
    order = ["LoadVideo", "GetVideoComponents", "PhysioLatentFaceCrop", "PhysioLatentVAEEncode",
             "PhysioLatentFusion", "PhysioLatentFiLMDecode", "PhysioLatentFaceUncrop", "PhysioLatentFaceComposite",
             "CreateVideo", "SaveVideo"]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions)
    assert "CLIPLoader" in types and types.count("PhysioLatentEstimateHR") == 2


def test_fps_flows_from_the_video_wherever_time_matters():
    ui = load("training_free_edit")
    nodes = {n["id"]: n for n in ui["nodes"]}
    fps_links = [l for l in ui["links"] if nodes[l[1]]["type"] == "GetVideoComponents" and l[2] == 2]
    fed = {nodes[l[3]]["type"] for l in fps_links}
    assert {"PhysioLatentPulseEdit", "PhysioLatentEstimateHR", "PhysioLatentSaveVideo", "CreateVideo"} <= fed


def test_checker_catches_broken_workflows():
    ui = load("synthetic_edit_verify")
    bad = copy.deepcopy(ui)
    bad["nodes"][1]["type"] = "NoSuchNode"
    assert any("unknown type NoSuchNode" in p for p in check_workflow(bad, INFO))
    bad = copy.deepcopy(ui)
    bad["links"][0][5] = "LATENT"
    assert any("link 1" in p for p in check_workflow(bad, INFO))
    bad = copy.deepcopy(ui)
    edit = next(n for n in bad["nodes"] if n["type"] == "PhysioLatentPulseEdit")
    edit["widgets_values"][1] = 500.0  # target_hr_bpm outside 30..240
    assert any("target_hr_bpm" in p for p in check_workflow(bad, INFO))
    edit["widgets_values"].pop()
    assert any("widget values for" in p for p in check_workflow(bad, INFO))
    bad = copy.deepcopy(ui)
    est = next(n for n in bad["nodes"] if n["type"] == "PhysioLatentEstimateHR")
    est["inputs"][0]["link"] = None
    assert any("required input images is not connected" in p for p in check_workflow(bad, INFO))


def test_api_conversion_maps_widgets_and_links():
    ui = load("synthetic_edit_verify")
    api = ui_to_api(ui, INFO)
    assert all(v["class_type"] not in ("Note", "MarkdownNote") for v in api.values())
    edit = next(v for v in api.values() if v["class_type"] == "PhysioLatentPulseEdit")
    assert edit["inputs"]["target_hr_bpm"] == 100.0 and edit["inputs"]["seed"] == 0
    assert edit["inputs"]["robust_to"] == "h264"
    # linked inputs become [source id, output slot]; fps comes from the subject's output 1
    syn_id = next(k for k, v in api.items() if v["class_type"] == "PhysioLatentSyntheticSubject")
    assert edit["inputs"]["images"] == [syn_id, 0] and edit["inputs"]["fps"] == [syn_id, 1]
    # control_after_generate takes a widget slot but is not an input
    slots = widget_slots(INFO["PhysioLatentPulseEdit"])
    assert ("seed", "control") in slots and "control_after_generate" not in edit["inputs"]
