"""Load every workflows/*.json in the real ComfyUI frontend (headless Chromium) and
screenshot it to docs/images/workflow_<name>.png.

    python tests/comfyui/screenshot_workflows.py --url http://127.0.0.1:8188

Needs a running ComfyUI with this pack in custom_nodes, `pip install playwright` in that
environment and Debian's chromium (/usr/bin/chromium). Fails (exit 1) when a workflow
loads with a missing node type, an error dialog, or widget values the frontend lays out
differently from the file (the graph is re-serialised after loading and compared).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]

# Runs in the page: load the graph, then report what the frontend made of it.
CHECK_JS = """async (wf) => {
  const app = window.app || window.comfyAPI?.app?.app;
  await app.loadGraphData(JSON.parse(JSON.stringify(wf)), true, true, 'check');
  await new Promise(r => setTimeout(r, 1500));
  const out = {missing: [], widgetMismatch: [], dialogs: []};
  const reg = window.LiteGraph?.registered_node_types || {};
  for (const node of app.graph._nodes || app.graph.nodes) {
    if (node.type !== 'Note' && node.type !== 'MarkdownNote' && !reg[node.type]) out.missing.push(node.type);
  }
  const ser = app.graph.serialize();
  const byId = Object.fromEntries(ser.nodes.map(n => [n.id, n]));
  for (const n of wf.nodes) {
    const s = byId[n.id];
    if (!s) { out.widgetMismatch.push(`${n.type} ${n.id} vanished`); continue; }
    const a = JSON.stringify(n.widgets_values || []), b = JSON.stringify(s.widgets_values || []);
    if (a !== b) out.widgetMismatch.push(`${n.type} ${n.id}: file ${a} frontend ${b}`);
  }
  for (const d of document.querySelectorAll('.p-dialog, .comfy-modal[style*="block"]')) {
    const t = d.innerText.trim(); if (t) out.dialogs.push(t.slice(0, 300));
  }
  return out;
}"""


def _skip_first_run_dialog(url: str) -> None:
    """Mark the tutorial as done in this server's user settings, so the template browser
    does not open over the first workflow."""
    import urllib.request

    req = urllib.request.Request(url.rstrip("/") + "/settings/Comfy.TutorialCompleted", data=b"true",
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=30).close()


def _shrink_png(path: Path, max_bytes: int = 300_000) -> None:
    """Palette PNG (the UI has few colours): keeps docs/images small."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)
    if path.stat().st_size > max_bytes:
        raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {max_bytes}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8188")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    ap.add_argument("names", nargs="*", help="workflow names (default: all)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    paths = sorted((REPO / "workflows").glob("*.json"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    _skip_first_run_dialog(args.url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 2240, "height": 1260})
        page.goto(args.url, wait_until="networkidle")
        page.wait_for_function("() => (window.app || window.comfyAPI?.app?.app)?.graph", timeout=60000)
        page.wait_for_timeout(2000)
        page.keyboard.press("Escape")  # the first-run template browser
        page.wait_for_timeout(1000)
        for path in paths:
            wf = json.loads(path.read_text())
            result = page.evaluate(CHECK_JS, wf)
            page.wait_for_timeout(500)
            shot = out_dir / f"workflow_{path.stem}.png"
            page.screenshot(path=str(shot), type="png")
            _shrink_png(shot)
            bad = result["missing"] or result["widgetMismatch"] or result["dialogs"]
            failed |= bool(bad)
            print(f"{path.stem}: {'PROBLEMS ' + json.dumps(result) if bad else 'ok'} -> {shot}")
            page.keyboard.press("Escape")  # close any dialog before the next workflow
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
