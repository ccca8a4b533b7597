"""The web viewer's interaction speed, measured in the browser (Performance API).

Input: a CT phantom series, 300 x 512 x 512 at (1.0, 0.7, 0.7) mm when timed (100 slices with
``bench --quick``, 40 x 256 x 256 in a plain ``pytest`` smoke run), ingested into a store and
served by ``python -m voxelflow serve`` with its defaults (one process, render threads = cores)
on 127.0.0.1; Debian's headless Chromium shows ``/viewer`` in a viewport whose axial and
oblique panes are exactly 512 x 512 device pixels. Server, browser and this process share the
machine's two cores, as a radiologist's workstation running both would not: the figures are a
floor.

Rows (each one ``benchmark.pedantic`` round around the browser's measurement; the numbers are in
``extra_info`` and printed, no timing is asserted):

- scroll: the page's own wheel handler gets a wheel event every 16 ms (a 60 Hz wheel) for 250
  slices down the axial pane; frames/s is the number of axial images put on the screen while
  the wheel turned, over the time it turned (target >= 20 frames/s at 512 x 512), with each
  shown frame's latency from the input that asked for it (p50 / p95);
- rotate: the oblique pane's dashed line in the axial pane is dragged with the mouse (real
  input events) through 40 steps of 3 degrees; each step waits for the 20 mm slab MIP to be on
  the screen, and its latency is from the pointer event to the image drawn (target p95
  <= 100 ms).

Latencies are ``performance.measure`` entries the page makes for each frame it shows (from the
input event's time to the end of ``drawImage``); the decode of the PNG in the browser counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from voxelflow.ingest import ingest
from voxelflow.testing import write_series
from voxelflow.testing.browser import ServeProcess, chromium_path, launch_chromium

SHAPES = {"smoke": (40, 256, 256), "quick": (100, 512, 512), "full": (300, 512, 512)}
SPACING = (1.0, 0.7, 0.7)
PANE = 512  # device pixels of the measured panes
SCROLL_EVENTS = {"smoke": 20, "quick": 80, "full": 250}
ROTATE_STEPS = {"smoke": 5, "quick": 20, "full": 40}
TARGETS = {"scroll_fps": 20.0, "rotate_p95_ms": 100.0}


def _show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print("\n" + text)


@pytest.fixture(scope="module")
def playwright_api() -> Any:
    api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is a test dependency")
    if chromium_path() is None:
        pytest.skip("no Chromium on this machine (Debian package chromium; .ci/run installs it)")
    return api


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, bench_scale: str) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("viewer-bench")
    write_series(root / "dicom", shape=SHAPES[bench_scale], spacing=SPACING, seed=7)
    report = ingest([root / "dicom"], root / "store")
    assert not report.failures, report.table()
    with ServeProcess(root / "store", root, extra=()) as server:
        yield server


@pytest.fixture(scope="module")
def page(playwright_api: Any, served: ServeProcess) -> Iterator[Any]:
    """The viewer on the series, its axial and oblique panes resized to PANE x PANE."""
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 2 * PANE + 2, "height": 2 * PANE + 80}, device_scale_factor=1)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.goto(served.url + "/viewer")
        _wait_shown(pg)
        # the header and footer take what they take: grow the viewport until the panes fit
        pane = pg.evaluate("(() => { const r = window.voxelviewer.panes.axial.el.getBoundingClientRect(); return [r.width, r.height]; })()")
        pg.set_viewport_size({"width": 2 * PANE + 2, "height": 2 * PANE + 80 + 2 * (PANE - round(pane[1]))})
        pg.wait_for_function(f"() => window.voxelviewer.panes.axial.width === {PANE} && window.voxelviewer.panes.axial.height === {PANE}"
                             f" && window.voxelviewer.panes.oblique.width === {PANE} && window.voxelviewer.panes.oblique.height === {PANE}")
        _wait_shown(pg)
        yield pg
        assert errors == []
        browser.close()


def _wait_shown(pg: Any) -> None:
    pg.wait_for_function(
        "() => { const v = window.voxelviewer; return v && v.ready && Object.values(v.panes).every("
        "p => p.idle()); }", timeout=120000)


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1)}


_SCROLL = """async (events) => {
  const v = window.voxelviewer, pane = v.panes.axial, geo = v.state.volume.geo;
  // start at the top slice, so that every event moves one slice down
  v.state.point = geo.at([geo.shape[0] - 1, geo.middle[1], geo.middle[2]]);
  pane.update();
  while (!pane.idle()) await new Promise(r => setTimeout(r, 5));
  performance.clearMeasures();
  const before = v.log.frames.length;
  const t0 = performance.now();
  for (let k = 0; k < events; k++) {
    pane.el.dispatchEvent(new WheelEvent("wheel", {deltaY: 100, bubbles: true, cancelable: true}));
    await new Promise(r => setTimeout(r, 16));
  }
  const t1 = performance.now();
  while (!pane.idle()) await new Promise(r => setTimeout(r, 5));
  const frames = v.log.frames.slice(before).filter(f => f.pane === "axial");
  const during = frames.filter(f => f.shownAt <= t1);
  const latencies = performance.getEntriesByName("voxelviewer:axial").map(m => m.duration);
  return {seconds: (t1 - t0) / 1000, shown: during.length, after: frames.length - during.length,
          last_ms: performance.now() - t1, latencies, width: pane.width, height: pane.height};
}"""


def bench_viewer_scroll(benchmark: Any, page: Any, bench_scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    events = SCROLL_EVENTS[bench_scale]
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(page.evaluate(_SCROLL, events))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert (result["width"], result["height"]) == (PANE, PANE)
    assert result["shown"] > 0
    fps = result["shown"] / result["seconds"]
    info = {"events": events, "frames_shown": result["shown"], "fps": round(fps, 1),
            "target_fps": TARGETS["scroll_fps"], **_percentiles(result["latencies"]),
            "last_frame_after_ms": round(result["last_ms"], 1), "pane": f"{PANE}x{PANE}"}
    benchmark.group = "viewer scroll"
    benchmark.extra_info.update(info)
    _show(capsys, f"viewer scroll ({bench_scale}): {info}")


_GRAB = """() => { const p = window.voxelviewer.panes.axial;
  const [pi, pj] = p.toPixel(p.shownPlane(), window.voxelviewer.state.point);
  const line = p.lines().find(l => l.pane === 'oblique');
  const r = p.el.getBoundingClientRect();
  return {pivot: [r.left + pi / p.dpr, r.top + pj / p.dpr], dir: line.dir}; }"""

_STEP_DONE = """() => { const p = window.voxelviewer.panes.oblique;
  return p.idle(); }"""


def bench_viewer_rotate_slab_mip(benchmark: Any, page: Any, bench_scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    steps = ROTATE_STEPS[bench_scale]
    latencies: list[float] = []

    def run() -> None:
        page.evaluate("() => { const s = window.voxelviewer.state; s.slab = 20; s.mode = 'mip'; }")
        grab = page.evaluate(_GRAB)
        (px, py), (dx, dy) = grab["pivot"], grab["dir"]
        radius = 100.0
        angle0 = math.atan2(dy, dx)
        page.mouse.move(px + radius * math.cos(angle0), py + radius * math.sin(angle0))
        page.mouse.down()
        page.evaluate("performance.clearMeasures()")
        for k in range(1, steps + 1):
            a = angle0 + math.radians(3 * k)
            page.mouse.move(px + radius * math.cos(a), py + radius * math.sin(a))
            page.wait_for_function(_STEP_DONE, timeout=30000)
        page.mouse.up()
        latencies.extend(page.evaluate("performance.getEntriesByName('voxelviewer:oblique').map(m => m.duration)"))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(latencies) >= steps * 0.9, latencies
    size = page.evaluate("[window.voxelviewer.panes.oblique.width, window.voxelviewer.panes.oblique.height]")
    assert size == [PANE, PANE]
    info = {"steps": steps, "frames": len(latencies), **_percentiles(latencies),
            "target_p95_ms": TARGETS["rotate_p95_ms"], "slab": "20 mm MIP", "pane": f"{PANE}x{PANE}"}
    benchmark.group = "viewer rotate"
    benchmark.extra_info.update(info)
    _show(capsys, f"viewer slab MIP rotation ({bench_scale}): {info}")
