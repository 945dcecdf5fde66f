"""ComfyUI workflow helpers shared by the workflow tests, the host test and the builder.

* ``pack_object_info()``: /object_info entries for our nodes, computed without ComfyUI
  (the same fields ComfyUI's server.node_info gives).
* ``core_object_info()``: the recorded core entries (tests/data/core_object_info.json).
* ``widget_slots(info)``: how the frontend lays out ``widgets_values`` for a node.
* ``Workflow``: builds a UI-format graph (``version`` 0.4, ``nodes`` + ``links``) that the
  frontend loads.
* ``check_workflow(ui, object_info)``: everything that would make the frontend warn or the
  server refuse the prompt: unknown node types, link type mismatches, unconnected required
  inputs, widget values that do not fit.
* ``ui_to_api(ui, object_info)``: UI graph -> API prompt for POST /prompt.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE_OBJECT_INFO = REPO / "tests" / "data" / "core_object_info.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Frontend-only nodes: never sent to the server, no /object_info entry.
VIRTUAL_NODES = {"Note", "MarkdownNote"}
# Combo inputs whose options are the user's files: any non-empty file name is acceptable.
FILE_COMBOS = {"file", "image", "video", "vae_name", "clip_name", "unet_name", "ckpt_name", "adapter_name",
               "lora_name"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload")


# --------------------------------------------------------------------------- object_info
def load_pack():
    """Import the repo root as the node pack (as ComfyUI does), without ComfyUI."""
    if "physiolatent_pack" in sys.modules:
        return sys.modules["physiolatent_pack"]
    spec = importlib.util.spec_from_file_location(
        "physiolatent_pack", REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["physiolatent_pack"] = module
    spec.loader.exec_module(module)
    return module


def node_info(name: str, cls, display_name: str) -> dict:
    """The /object_info entry ComfyUI's server builds for a V1 node class."""
    inputs = cls.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": name,
        "display_name": display_name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    # JSON round trip: tuples -> lists, exactly as the server sends it.
    return json.loads(json.dumps(info))


def pack_object_info() -> dict:
    pack = load_pack()
    return {name: node_info(name, cls, pack.NODE_DISPLAY_NAME_MAPPINGS.get(name, name))
            for name, cls in pack.NODE_CLASS_MAPPINGS.items()}


def core_object_info() -> dict:
    return json.loads(CORE_OBJECT_INFO.read_text())


def trim_core_info(info: dict, max_options: int = 100) -> dict:
    """Keep what the workflow checks need from one core /object_info entry."""
    def trim_spec(spec):
        spec = list(spec)
        if isinstance(spec[0], list):
            spec[0] = spec[0][:max_options]
        opts = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
        opts.pop("tooltip", None)
        if isinstance(opts.get("options"), list):
            opts["options"] = opts["options"][:max_options]
        return [spec[0], opts]

    inputs = {sec: {k: trim_spec(v) for k, v in d.items()}
              for sec, d in info["input"].items() if sec in ("required", "optional")}
    return {
        "input": inputs,
        "input_order": {k: v for k, v in info.get("input_order", {}).items() if k in inputs},
        "output": info["output"],
        "output_name": info["output_name"],
        "name": info["name"],
        "display_name": info.get("display_name", info["name"]),
        "output_node": info.get("output_node", False),
    }


# --------------------------------------------------------------------------- widget layout
def input_kind(spec) -> str:
    """'COMBO', 'INT', ... for widgets; the socket type (IMAGE, MASK, ...) otherwise."""
    head = spec[0]
    if isinstance(head, list):
        return "COMBO"
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if head in WIDGET_TYPES and opts.get("forceInput"):
        return "SOCKET:" + head
    return head


def combo_options(spec) -> list:
    if isinstance(spec[0], list):
        return spec[0]
    return (spec[1] if len(spec) > 1 else {}).get("options", [])


def ordered_inputs(info: dict) -> list[tuple[str, list, bool]]:
    """[(name, spec, required)] in the server's input order."""
    out = []
    for section in ("required", "optional"):
        specs = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(specs)):
            out.append((name, specs[name], section == "required"))
    return out


def has_control_slot(name: str, spec) -> bool:
    """INT widgets with control_after_generate get an extra widgets_values slot."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return input_kind(spec) == "INT" and bool(opts.get("control_after_generate"))


def widget_slots(info: dict) -> list[tuple[str, str]]:
    """Layout of widgets_values: [(input name, role)], role 'value' | 'control' | 'upload'."""
    slots = []
    for name, spec, _req in ordered_inputs(info):
        kind = input_kind(spec)
        if kind not in WIDGET_TYPES:
            continue
        slots.append((name, "value"))
        if has_control_slot(name, spec):
            slots.append((name, "control"))
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if any(opts.get(flag) for flag in UPLOAD_FLAGS):
            slots.append((name, "upload"))
    return slots


def socket_type(spec) -> str:
    kind = input_kind(spec)
    if kind.startswith("SOCKET:"):
        return kind[len("SOCKET:"):]
    return kind


# --------------------------------------------------------------------------- builder
class Workflow:
    """Builds a UI-format workflow. Nodes are added by type with widget values by name."""

    def __init__(self, object_info: dict):
        self.info = object_info
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def add(self, node_type: str, pos, title: str | None = None, **widgets) -> dict:
        info = self.info[node_type]
        values = []
        for name, role in widget_slots(info):
            spec = dict((n, s) for n, s, _ in ordered_inputs(info))[name]
            if role == "control":
                values.append(widgets.pop(name + "__control", "fixed"))
            elif role == "upload":
                values.append("image")
            else:
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                default = opts.get("default", (combo_options(spec) or [""])[0] if input_kind(spec) == "COMBO" else None)
                values.append(widgets.pop(name, default))
        if widgets:
            raise KeyError(f"{node_type} has no widgets {sorted(widgets)}")
        sockets = [{"name": n, "type": socket_type(s), "link": None}
                   for n, s, _ in ordered_inputs(info) if socket_type(s) not in WIDGET_TYPES]
        outputs = [{"name": n, "type": t, "links": []} for n, t in zip(info["output_name"], info["output"])]
        n_rows = max(len(sockets), len(outputs)) + len(values)
        node = {"id": len(self.nodes) + 1, "type": node_type, "pos": [float(pos[0]), float(pos[1])],
                "size": [340.0, 46.0 + 24.0 * n_rows], "flags": {}, "order": 0, "mode": 0,
                "inputs": sockets, "outputs": outputs,
                "properties": {"Node name for S&R": node_type}, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, pos, text: str, size=(420, 260), title: str = "Read me") -> dict:
        node = {"id": len(self.nodes) + 1, "type": "MarkdownNote", "pos": [float(pos[0]), float(pos[1])],
                "size": [float(size[0]), float(size[1])], "flags": {}, "order": 0, "mode": 0,
                "inputs": [], "outputs": [], "title": title, "properties": {}, "widgets_values": [text],
                "color": "#432", "bgcolor": "#653"}
        self.nodes.append(node)
        return node

    def link(self, src: dict, output: str, dst: dict, input_name: str) -> None:
        """Connect src's output (by name) to dst's input (socket, or a widget turned input)."""
        out_slot = next(i for i, o in enumerate(src["outputs"]) if o["name"] == output)
        out_type = src["outputs"][out_slot]["type"]
        slot = next((i for i, s in enumerate(dst["inputs"]) if s["name"] == input_name), None)
        if slot is None:  # a widget fed by a link: the frontend adds a socket with "widget"
            spec = {n: s for n, s, _ in ordered_inputs(self.info[dst["type"]])}[input_name]
            dst["inputs"].append({"name": input_name, "type": socket_type(spec), "widget": {"name": input_name},
                                  "link": None})
            slot = len(dst["inputs"]) - 1
        link_id = len(self.links) + 1
        dst["inputs"][slot]["link"] = link_id
        src["outputs"][out_slot]["links"].append(link_id)
        self.links.append([link_id, src["id"], out_slot, dst["id"], slot, out_type])

    def to_json(self) -> dict:
        self._set_order()
        return {"id": str(uuid.UUID(int=len(self.nodes) * 7919 + len(self.links))), "revision": 0,
                "last_node_id": len(self.nodes), "last_link_id": len(self.links),
                "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
                "extra": {"ds": self._fit_view()}, "version": 0.4}

    def _fit_view(self, width: float = 2150.0, height: float = 1120.0) -> dict:
        """Canvas zoom/offset that shows the whole graph in a ~2150x1120 px view on load."""
        x0 = min(n["pos"][0] for n in self.nodes) - 20
        y0 = min(n["pos"][1] for n in self.nodes) - 40
        x1 = max(n["pos"][0] + n["size"][0] for n in self.nodes) + 20
        y1 = max(n["pos"][1] + n["size"][1] for n in self.nodes) + 20
        scale = round(min(1.0, width / (x1 - x0), height / (y1 - y0)), 3)
        return {"scale": scale, "offset": [round(40 / scale - x0, 1), round(20 / scale - y0, 1)]}

    def _set_order(self) -> None:
        """Execution order = a topological order of the graph (what the frontend stores)."""
        deps = {n["id"]: {l[1] for l in self.links if l[3] == n["id"]} for n in self.nodes}
        done, order = set(), 0
        while len(done) < len(self.nodes):
            for node in self.nodes:
                if node["id"] not in done and deps[node["id"]] <= done:
                    node["order"] = order
                    order += 1
                    done.add(node["id"])


# --------------------------------------------------------------------------- checks
def _fits(value, spec) -> str | None:
    """None if ``value`` is acceptable for the widget ``spec``, else why not."""
    kind = input_kind(spec)
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if kind == "COMBO":
        return None if value in combo_options(spec) else f"{value!r} not in {combo_options(spec)[:8]}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
        if kind == "INT" and not float(value).is_integer():
            return f"{value!r} is not an integer"
        if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
            return f"{value!r} outside [{opts.get('min')}, {opts.get('max')}]"
        return None
    return f"unknown widget kind {kind}"


def check_workflow(ui: dict, object_info: dict) -> list[str]:
    """Every problem the frontend or the server would report for this UI workflow."""
    problems = []
    if ui.get("version") != 0.4 or not isinstance(ui.get("nodes"), list) or not isinstance(ui.get("links"), list):
        return ["not a UI workflow: needs version 0.4, 'nodes' and 'links'"]
    nodes = {n["id"]: n for n in ui["nodes"]}
    if not any(n["type"] in VIRTUAL_NODES for n in ui["nodes"]):
        problems.append("no Note/MarkdownNote explaining the workflow")
    links = {l[0]: l for l in ui["links"]}
    for lid, origin, oslot, target, tslot, ltype in ui["links"]:
        if origin not in nodes or target not in nodes:
            problems.append(f"link {lid} joins missing nodes")
            continue
        o, t = nodes[origin], nodes[target]
        if o["type"] in object_info and object_info[o["type"]]["output"][oslot] != ltype:
            problems.append(f"link {lid}: {o['type']} output {oslot} is "
                            f"{object_info[o['type']]['output'][oslot]}, link says {ltype}")
        tin = t["inputs"][tslot]
        if tin.get("link") != lid:
            problems.append(f"link {lid}: {t['type']} input {tin['name']} does not point back to it")
        if t["type"] in object_info:
            specs = {n: s for n, s, _ in ordered_inputs(object_info[t["type"]])}
            if tin["name"] not in specs:
                problems.append(f"link {lid}: {t['type']} has no input {tin['name']}")
            else:
                want = socket_type(specs[tin["name"]])
                if want not in ("*", ltype):
                    problems.append(f"link {lid}: {o['type']}.{ltype} -> {t['type']}.{tin['name']} wants {want}")
    for node in ui["nodes"]:
        ntype = node["type"]
        if ntype in VIRTUAL_NODES:
            continue
        if ntype not in object_info:
            problems.append(f"node {node['id']}: unknown type {ntype}")
            continue
        info = object_info[ntype]
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for i in node.get("inputs", []):
            if i.get("link") is not None and i["link"] not in links:
                problems.append(f"node {node['id']} {ntype}: input {i['name']} has a dangling link")
        for name, spec, required in ordered_inputs(info):
            if required and socket_type(spec) not in WIDGET_TYPES and name not in linked:
                problems.append(f"node {node['id']} {ntype}: required input {name} is not connected")
        slots = widget_slots(info)
        values = node.get("widgets_values", [])
        if len(values) != len(slots):
            problems.append(f"node {node['id']} {ntype}: {len(values)} widget values for {len(slots)} widgets "
                            f"{[s for s, _ in slots]}")
            continue
        specs = {n: s for n, s, _ in ordered_inputs(info)}
        for (name, role), value in zip(slots, values):
            if role == "control":
                why = None if value in ("fixed", "increment", "decrement", "randomize") else f"bad control {value!r}"
            elif role == "upload" or name in linked:
                why = None
            elif name in FILE_COMBOS and input_kind(specs[name]) == "COMBO":
                why = None if isinstance(value, str) and value else f"empty file name {value!r}"
            else:
                why = _fits(value, specs[name])
            if why:
                problems.append(f"node {node['id']} {ntype}: widget {name}: {why}")
    return problems


# --------------------------------------------------------------------------- API format
def ui_to_api(ui: dict, object_info: dict) -> dict:
    """UI workflow -> API prompt {id: {"class_type", "inputs"}} (active nodes only)."""
    links = {l[0]: l for l in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) != 0:
            continue
        info = object_info[node["type"]]
        inputs = {}
        for (name, role), value in zip(widget_slots(info), node.get("widgets_values", [])):
            if role == "value":
                inputs[name] = value
        for socket in node.get("inputs", []):
            link = links.get(socket.get("link"))
            if link is not None:
                inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
