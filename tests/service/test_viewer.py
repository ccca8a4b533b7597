"""The web viewer (`GET /viewer`) end to end: a real `voxelflow serve` on a loopback port and
headless Chromium (Debian's, driven by Playwright), on phantom CT series acquired axially,
coronally and sagittally.

What the page shows is compared with what the API and the library render: each pane's canvas
must hold the service's PNG for the pane's request, pixel for pixel.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from svc_helpers import image

from voxelflow import Plane, mpr
from voxelflow.display import Window, pipeline_for
from voxelflow.ingest import ingest
from voxelflow.render import Slab
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series
from voxelflow.testing.browser import ServeProcess, chromium_path, launch_chromium

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is a test dependency")
if chromium_path() is None:
    pytest.skip("no Chromium on this machine (Debian package chromium; .ci/run installs it)", allow_module_level=True)

TOKEN = "viewer-token-" + "v" * 24
VIEWPORT = {"width": 820, "height": 640}
SCALE = 2  # device pixels per CSS pixel: every image must come at the device size


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three CT phantoms of one torso, acquired axially, coronally and sagittally: name -> key."""
    root = tmp_path_factory.mktemp("viewer")
    series = {
        "axial": write_series(root / "dicom" / "axial", shape=(40, 80, 80), spacing=(2.5, 2.0, 2.0), seed=31, series_number=2),
        "coronal": write_series(root / "dicom" / "coronal", shape=(40, 72, 80), spacing=(2.5, 2.5, 2.0),
                                orientation="coronal", seed=32, series_number=3),
        "sagittal": write_series(root / "dicom" / "sagittal", shape=(40, 72, 80), spacing=(2.5, 2.5, 2.0),
                                 orientation="sagittal", seed=33, series_number=4),
    }
    report = ingest([root / "dicom"], root / "store")
    assert not report.failures, report.table()
    vs = VolumeStore(root / "store", read_only=True)
    keys = {}
    for name, info in series.items():
        (key,) = [k for k in vs if vs.open(k).meta.get("series_instance_uid") == info.series_uid]
        keys[name] = key
    return root, root / "store", keys, series


@pytest.fixture(scope="module")
def server(store):
    root, path, _, _ = store
    with ServeProcess(path, root) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


class Page:
    """One browser tab on the viewer, recording console messages and every request."""

    def __init__(self, browser, base: str, viewport: dict | None = None, scale: float = SCALE) -> None:
        self.context = browser.new_context(viewport=viewport or VIEWPORT, device_scale_factor=scale)
        self.page = self.context.new_page()
        self.base = base
        self.console: list[tuple[str, str]] = []
        self.requests: list = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.console.append(("pageerror", str(e))))
        self.page.on("request", lambda r: self.requests.append(r))

    def open(self, query: str = "") -> None:
        self.page.goto(self.base + "/viewer" + query)
        self.wait_shown()

    def wait_shown(self) -> None:
        """Until the page has a volume and every pane shows what it asks for now."""
        self.page.wait_for_function(
            "() => { const v = window.voxelviewer; return v && v.ready && Object.values(v.panes).every("
            "p => p.idle()); }", timeout=30000)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def pane(self, name: str) -> dict:
        return self.js("""name => { const p = window.voxelviewer.panes[name];
            const r = p.el.getBoundingClientRect();
            return {url: p.shown.url, plane: p.shown.plane, width: p.width, height: p.height,
                    css: [r.left, r.top, r.width, r.height], labels: Object.fromEntries(
                    Object.entries(p.labels).map(([k, el]) => [k, el.textContent]))}; }""", name)

    def pixels(self, name: str, layer: str = "image") -> np.ndarray:
        """A pane's canvas as (rows, columns, 4) uint8, read back as a PNG (lossless)."""
        url = self.js("""([name, layer]) => { const p = window.voxelviewer.panes[name];
            return (layer === 'image' ? p.image : p.overlay).toDataURL('image/png'); }""", [name, layer])
        rgba = image(base64.b64decode(url.split(",", 1)[1]))
        assert rgba.ndim == 3 and rgba.shape[2] == 4, rgba.shape
        return rgba

    def close(self) -> None:
        self.context.close()

    def errors(self) -> list[tuple[str, str]]:
        return [m for m in self.console if m[0] in ("error", "pageerror", "warning")]


@pytest.fixture
def page(browser, server):
    p = Page(browser, server.url)
    yield p
    p.close()


def _plane(info: dict) -> Plane:
    plane = info["plane"]
    return Plane(center=plane["center"], row=plane["row"], col=plane["col"], spacing=tuple(plane["spacing"]),
                 size=tuple(int(v) for v in plane["size"]))


def _api_image(server: ServeProcess, url: str) -> np.ndarray:
    r = server.get(url, accept="image/png")
    assert r.status_code == 200, r.text
    return image(r.content)


def _same_as_api(page: Page, server: ServeProcess, name: str) -> np.ndarray:
    info = page.pane(name)
    canvas = page.pixels(name)
    assert canvas.shape[:2] == (info["height"], info["width"])
    # the pane's image was asked for at its device pixels, not its CSS pixels
    assert (info["width"], info["height"]) == (round(info["css"][2] * SCALE), round(info["css"][3] * SCALE))
    assert f"size={info['height']},{info['width']}" in info["url"]
    expected = _api_image(server, info["url"])
    assert expected.shape == canvas.shape[:2], (expected.shape, canvas.shape)
    np.testing.assert_array_equal(canvas[..., 0], expected, err_msg=name)
    np.testing.assert_array_equal(canvas[..., 1], canvas[..., 0])
    np.testing.assert_array_equal(canvas[..., 2], canvas[..., 0])
    return canvas[..., 0]


def test_page_loads_a_series_and_every_pane_is_the_apis_image(page, server, store):
    _, _, keys, series = store
    page.open()
    assert page.errors() == []
    # the picker lists what QIDO-RS has, and the first series of the study is shown
    studies = page.js("[...document.querySelectorAll('#study option')].map(o => o.value)")
    assert set(studies) == {info.study_uid for info in series.values()}
    shown = page.js("window.voxelviewer.state.volume.key")
    assert shown in keys.values()
    for name in ("axial", "coronal", "sagittal", "oblique"):
        pixels = _same_as_api(page, server, name)
        assert pixels.std() > 10, name  # the phantom, not an empty frame
    # only same-origin requests, and no token in any URL
    assert all(r.url.startswith(server.url) for r in page.requests)
    assert page.errors() == []


def test_the_series_picker_switches_volumes(page, server, store):
    _, _, keys, series = store
    page.open(f"?volume={keys['axial']}")
    assert page.js("window.voxelviewer.state.volume.key") == keys["axial"]
    sagittal = series["sagittal"]
    page.page.select_option("#study", sagittal.study_uid)
    page.page.wait_for_function(f"() => window.voxelviewer.state.volume.key === {keys['sagittal']!r}", timeout=20000)
    assert page.page.input_value("#series") == sagittal.series_uid
    page.wait_shown()
    _same_as_api(page, server, "axial")
    assert page.errors() == []


def _line_rows(overlay: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Rows of an overlay where a horizontal line of `color` runs (most of the width)."""
    hit = np.all(np.abs(overlay[..., :3].astype(int) - color) < 40, axis=-1) & (overlay[..., 3] > 200)
    return np.flatnonzero(hit.mean(axis=1) > 0.5)


AXIAL_BLUE = (0x4A, 0xA3, 0xFF)


def test_the_wheel_steps_the_axial_slice_and_moves_the_other_crosshairs(page, server, store):
    _, _, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    before = {name: page.pane(name) for name in ("axial", "coronal", "sagittal")}
    point = page.js("window.voxelviewer.state.point")
    rows_before = _line_rows(page.pixels("coronal", "overlay"), AXIAL_BLUE)
    x, y, w, h = before["axial"]["css"]
    page.page.mouse.move(x + w / 2, y + h / 2)
    for _ in range(3):
        page.page.mouse.wheel(0, -100)  # up: along the normal, towards the head
        page.page.wait_for_timeout(30)
    page.wait_shown()
    after = {name: page.pane(name) for name in ("axial", "coronal", "sagittal")}
    moved = page.js("window.voxelviewer.state.point")
    # three slices of 2.5 mm towards the head (+z in LPS), x and y unchanged
    assert moved[2] == pytest.approx(point[2] + 3 * 2.5)
    assert moved[:2] == pytest.approx(point[:2])
    assert after["axial"]["url"] != before["axial"]["url"]
    assert _plane(after["axial"]).center[2] == pytest.approx(moved[2])
    # the coronal and sagittal images stay, their axial crosshair line moves by 7.5 mm
    for name in ("coronal", "sagittal"):
        assert after[name]["url"] == before[name]["url"]
    rows_after = _line_rows(page.pixels("coronal", "overlay"), AXIAL_BLUE)
    assert rows_before.size and rows_after.size
    mm_per_pixel = after["coronal"]["plane"]["spacing"][0]
    shift = (rows_after.mean() - rows_before.mean()) * mm_per_pixel
    # the coronal image has the head up: a move of +dz mm is a shift of -dz mm down the image
    assert shift == pytest.approx(-(moved[2] - point[2]), abs=mm_per_pixel)
    _same_as_api(page, server, "axial")
    assert page.errors() == []


def test_a_drag_changes_the_window_and_the_pixels_follow(page, server, store):
    _, path, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    window = page.js("window.voxelviewer.state.window")
    old = page.pixels("axial")[..., 0]
    x, y, w, h = page.pane("axial")["css"]
    page.page.mouse.move(x + w * 0.3, y + h * 0.7)
    page.page.mouse.down()
    page.page.mouse.move(x + w * 0.3 + 60, y + h * 0.7 - 40, steps=6)
    page.page.mouse.up()
    page.wait_shown()
    new_window = page.js("window.voxelviewer.state.window")
    assert new_window["width"] > window["width"] * 1.2  # right: wider
    assert new_window["center"] < window["center"]  # up: a lower level
    # the drag did not move the point (it was a drag, not a click)
    info = page.pane("axial")
    assert f"window={round(new_window['center'], 2):g},{round(new_window['width'], 2):g}" in info["url"]
    pixels = _same_as_api(page, server, "axial")
    assert not np.array_equal(pixels, old)
    # and the library, with that window, renders the same pixels
    volume = VolumeStore(path, read_only=True).open(keys["axial"])
    c, wd = (float(v) for v in re.search(r"window=([^&]+)", info["url"]).group(1).split(","))
    display = pipeline_for(volume).with_voi(Window(center=c, width=wd)).with_bits(8)
    expected = mpr(volume, _plane(info), display=display)
    np.testing.assert_array_equal(pixels, expected)
    assert window["center"] == 40.0 and window["width"] == 400.0  # the series' own first window


def test_a_preset_and_reset(page, server, store):
    _, _, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    page.page.click("button[data-preset=lung]")
    page.wait_shown()
    assert page.js("window.voxelviewer.state.window") == {"center": -600, "width": 1500}
    assert "window=-600,1500" in page.pane("axial")["url"]
    assert "W 1500" in page.page.inner_text("#window")
    page.page.click("#reset")
    page.wait_shown()
    assert page.js("window.voxelviewer.state.window") == {"center": 40, "width": 400}


def test_the_oblique_slab_mip_pane_matches_mpr_and_turns_with_its_line(page, server, store):
    _, path, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    first = page.pane("oblique")
    # grab the dashed oblique line in the axial pane, 60 CSS px from the point, and turn it
    grab = page.js("""() => { const p = window.voxelviewer.panes.axial;
        const plane = p.shownPlane(); const [pi, pj] = p.toPixel(plane, window.voxelviewer.state.point);
        const line = p.lines().find(l => l.pane === 'oblique');
        const r = p.el.getBoundingClientRect();
        return {pivot: [r.left + pi / p.dpr, r.top + pj / p.dpr], dir: line.dir}; }""")
    (px, py), (dx, dy) = grab["pivot"], grab["dir"]
    start = (px + 60 * dx, py + 60 * dy)
    angle = math.radians(25)
    end = (px + 60 * (dx * math.cos(angle) - dy * math.sin(angle)), py + 60 * (dx * math.sin(angle) + dy * math.cos(angle)))
    page.page.mouse.move(*start)
    page.page.mouse.down()
    page.page.mouse.move(*end, steps=8)
    page.page.mouse.up()
    page.wait_shown()
    turned = page.pane("oblique")
    assert turned["url"] != first["url"]
    n0 = np.cross(first["plane"]["row"], first["plane"]["col"])
    n1 = np.cross(turned["plane"]["row"], turned["plane"]["col"])
    # turned by the drag's angle about the axial normal (superior), staying vertical
    assert math.degrees(math.acos(np.clip(n0 @ n1, -1, 1))) == pytest.approx(25, abs=2)
    assert abs(n1[2]) < 1e-6
    assert "slab=20&mode=mip" in turned["url"]
    pixels = _same_as_api(page, server, "oblique")
    volume = VolumeStore(path, read_only=True).open(keys["axial"])
    display = pipeline_for(volume).with_voi(Window(center=40, width=400)).with_bits(8)
    expected = mpr(volume, _plane(turned), slab=Slab(20.0, "max"), display=display)
    np.testing.assert_array_equal(pixels, expected)
    # a thinner MinIP slab, from the controls
    page.page.fill("#slab", "6")
    page.page.select_option("#mode", "minip")
    page.wait_shown()
    thin = page.pane("oblique")
    assert "slab=6&mode=minip" in thin["url"]
    expected = mpr(volume, _plane(thin), slab=Slab(6.0, "min"), display=display)
    np.testing.assert_array_equal(_same_as_api(page, server, "oblique"), expected)
    assert page.errors() == []


def test_the_rotating_mip_turns(page, server, store):
    _, _, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    page.page.click("#rotate")
    page.page.wait_for_function(
        "() => new Set(window.voxelviewer.log.frames.filter(f => f.pane === 'oblique' && f.url.includes('/projection?'))"
        ".map(f => f.url)).size >= 3", timeout=20000)
    urls = page.js("window.voxelviewer.log.frames.filter(f => f.url.includes('/projection?')).map(f => f.url)")
    azimuths = [float(re.search(r"azimuth=([0-9.]+)", u).group(1)) for u in urls]
    assert azimuths[:3] == [0, 10, 20]
    page.page.click("#rotate")
    page.wait_shown()
    assert "/mpr?" in page.pane("oblique")["url"]
    assert page.errors() == []


# the labels a radiologist expects: axial seen from the feet, coronal from the front, sagittal
# from the patient's left
LABELS = {
    "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
    "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
    "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
}


@pytest.mark.parametrize("acquisition", ["axial", "coronal", "sagittal"])
def test_orientation_labels_whatever_the_acquisition(page, server, store, acquisition):
    _, _, keys, _ = store
    page.open(f"?volume={keys[acquisition]}")
    page.page.click("button[data-preset=bone]")
    page.wait_shown()
    for name, expected in LABELS.items():
        info = page.pane(name)
        assert info["labels"] == expected, (acquisition, name, info["labels"])
    # and the anatomy agrees: the spine (posterior) is in the half labelled P
    # (bone: pixels bright in the bone window; the vertebrae, arch and posterior ribs outweigh
    # the sternum and anterior ribs)
    bone = _same_as_api(page, server, "axial") > 100
    half = bone.shape[0] // 2
    assert bone[half:].mean() > 1.5 * bone[:half].mean(), acquisition
    bone = _same_as_api(page, server, "sagittal") > 100
    half = bone.shape[1] // 2
    assert bone[:, half:].mean() > 3 * bone[:, :half].mean(), acquisition
    # the oblique pane's labels follow its plane: a coronal plane turned 30 degrees about S
    assert page.pane("oblique")["labels"] == {"left": "RA", "right": "LP", "top": "S", "bottom": "I"}


def test_a_click_sets_the_point_in_every_pane(page, server, store):
    _, _, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    x, y, w, h = page.pane("axial")["css"]
    page.page.mouse.click(x + w * 0.25, y + h * 0.75)  # image left (patient right), lower (posterior)
    page.wait_shown()
    point = page.js("window.voxelviewer.state.point")
    center = page.js("window.voxelviewer.state.volume.geo.center")
    assert point[0] < center[0] - 10 and point[1] > center[1] + 10
    # the sagittal and coronal panes moved to the point; the axial pane did not
    assert _plane(page.pane("sagittal")).center[0] == pytest.approx(point[0])
    assert _plane(page.pane("coronal")).center[1] == pytest.approx(point[1])
    assert _plane(page.pane("axial")).center[2] == pytest.approx(point[2])
    _same_as_api(page, server, "sagittal")


def test_a_newer_frame_cancels_a_stale_one(page, server, store):
    """Scrolling while the service is slow (axial requests held back, not answered): at most
    two requests run at once, wishes that find both busy replace one another, a request older
    than the page's STALE_MS (150 ms) is cancelled for the newest wish, and the last wish ends up
    on the screen; nothing queues behind old frames."""
    _, _, keys, _ = store
    page.open(f"?volume={keys['axial']}")
    axial = re.compile(r".*/mpr\?orientation=axial.*")
    held, failed = [], []
    page.page.on("requestfailed", lambda r: failed.append(r.url))
    page.page.route(axial, lambda route: held.append(route))
    before = len(page.js("window.voxelviewer.log.frames"))
    # the notches come from inside the page, at exact times (a round trip from here takes more)
    wishes = page.js("""async () => { const pane = window.voxelviewer.panes.axial, out = [];
        const sleep = (ms) => new Promise(r => setTimeout(r, ms));
        for (const pause of [10, 10, 10, 10, 10, 250, 10]) {  // six quick notches, a pause, a seventh
            pane.el.dispatchEvent(new WheelEvent("wheel", {deltaY: 100, bubbles: true, cancelable: true}));
            out.push(pane.url());
            await sleep(pause);
        }
        return out; }""")
    asked = [r.request.url[len(server.url):] for r in held]
    page.page.unroute(axial)
    for route in held:
        with contextlib.suppress(playwright_api.Error):  # the page has cancelled it
            route.continue_()
    page.wait_shown()
    assert len(set(wishes)) == 7
    # two requests for the six quick notches (a third if the page stalled past STALE_MS among
    # them), one more for the seventh, which cancelled the first, held past STALE_MS by then
    assert 3 <= len(asked) <= 4 and set(asked) <= set(wishes) and asked[-1] == wishes[-1], (asked, wishes)
    failed = [u[len(server.url):] for u in failed]
    assert asked[0] in failed and set(failed) <= set(asked), (failed, asked)
    shown = [f["url"] for f in page.js("window.voxelviewer.log.frames")[before:] if f["pane"] == "axial"]
    # the cancelled frames never reached the screen; the last wish did
    assert shown[-1] == wishes[-1] and not set(shown) & set(failed), (shown, failed)
    _same_as_api(page, server, "axial")


def test_the_token_is_asked_once_and_sent_as_a_header(browser, store):
    root, path, _, _ = store
    folder = root / "with-token"
    folder.mkdir(exist_ok=True)
    server = ServeProcess(path, folder, token=TOKEN)
    try:
        p = Page(browser, server.url)
        p.page.goto(server.url + "/viewer")
        p.page.wait_for_selector("#login:not([hidden])")
        p.page.fill("#token", "wrong-token")
        p.page.click("#login button")
        p.page.wait_for_selector("#login:not([hidden])")
        assert "not valid" in p.page.inner_text("#login-error")
        p.page.fill("#token", TOKEN)
        p.page.click("#login button")
        p.wait_shown()
        _same_as_api(p, server, "axial")
        api = [r for r in p.requests if "/viewer" not in r.url]
        assert api and all(TOKEN not in r.url for r in p.requests)
        assert all(r.headers.get("authorization") in (f"Bearer {TOKEN}", "Bearer wrong-token") for r in api)
        # a reload in the same tab does not ask again
        p.page.reload()
        p.wait_shown()
        assert p.page.is_hidden("#login")
        # the 401/403 answers to the wrong token are expected; nothing else went wrong
        assert [m for m in p.errors() if "401" not in m[1] and "403" not in m[1]] == []
        p.close()
    finally:
        server.stop()


def test_the_viewer_files(server):
    r = httpx.get(server.url + "/viewer", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/viewer/"
    page = httpx.get(server.url + "/viewer/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # nothing is fetched from elsewhere at run time
    for name in ("", "viewer.js", "viewer.css"):
        text = httpx.get(server.url + "/viewer/" + name).text
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text, name
    again = httpx.get(server.url + "/viewer/viewer.js", headers={"If-None-Match": httpx.get(server.url + "/viewer/viewer.js").headers["etag"]})
    assert again.status_code == 304
    config = httpx.get(server.url + "/viewer/config.json").json()
    assert config["token_required"] is False and config["presets"]["lung"] == [-600.0, 1500.0]
    missing = httpx.get(server.url + "/viewer/nothing.js")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


#: Where the README's screenshot of the viewer goes (not committed: build/ is ignored).
SCREENSHOT = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "viewer.png"


def test_screenshot_of_the_demo_store(browser, tmp_path):
    """The README's picture: `voxelflow demo`'s store in the viewer, saved to
    build/screenshots/viewer.png."""
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "voxelflow", "demo", "--out", str(demo)], check=True,
                   capture_output=True, timeout=300)
    with ServeProcess(demo / "store", tmp_path) as server:
        p = Page(browser, server.url, viewport={"width": 1280, "height": 900}, scale=1)
        p.open()
        assert p.errors() == []
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        p.page.screenshot(path=str(SCREENSHOT))
        p.close()
    assert image(SCREENSHOT.read_bytes()).shape[:2] == (900, 1280)
