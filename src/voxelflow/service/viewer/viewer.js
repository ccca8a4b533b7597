// voxelflow viewer: three standard panes and an oblique slab pane, all rendered by the service.
//
// Geometry follows voxelflow.geometry.Plane: LPS millimetres; pixel (j, i) of a plane lies at
// center + (i - (W - 1) / 2) * s * row + (j - (H - 1) / 2) * s * col, with the normal row x col.
// Every pane asks /volumes/{key}/mpr for exactly its canvas's device pixels, so what the canvas
// holds is the service's image, byte for byte; crosshairs and labels are drawn on a second
// canvas above it.
"use strict";

(() => {
  // -- small vector algebra (LPS 3-vectors) ------------------------------------------------------
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const mul = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const norm = (a) => Math.hypot(a[0], a[1], a[2]);
  const unit = (a) => mul(a, 1 / norm(a));
  // right-hand rotation of v by `angle` radians about `axis` (Rodrigues)
  function rotate(v, axis, angle) {
    const k = unit(axis), c = Math.cos(angle), s = Math.sin(angle);
    return add(add(mul(v, c), mul(cross(k, v), s)), mul(k, dot(k, v) * (1 - c)));
  }
  function inverse3(m) { // m: rows of a 3x3 matrix
    const [a, b, c] = m[0], [d, e, f] = m[1], [g, h, i] = m[2];
    const A = e * i - f * h, B = f * g - d * i, C = d * h - e * g;
    const det = a * A + b * B + c * C;
    return [[A / det, (c * h - b * i) / det, (b * f - c * e) / det],
            [B / det, (a * i - c * g) / det, (c * d - a * f) / det],
            [C / det, (b * g - a * h) / det, (a * e - b * d) / det]];
  }
  const apply3 = (m, v) => [dot(m[0], v), dot(m[1], v), dot(m[2], v)];
  const fmt = (v) => v.map((x) => +x.toFixed(4)).join(",");

  // the standard views exactly as Plane.axial / coronal / sagittal lay them out
  const VIEWS = {
    axial: { row: [1, 0, 0], col: [0, 1, 0] },
    coronal: { row: [1, 0, 0], col: [0, 0, -1] },
    sagittal: { row: [0, 1, 0], col: [0, 0, -1] },
  };
  const COLORS = { axial: "#4aa3ff", coronal: "#5fd35f", sagittal: "#ff6b6b", oblique: "#ffd24a" };
  const LETTERS = [["L", "R"], ["P", "A"], ["S", "I"]]; // the + and - ends of LPS x, y, z
  // a request still running this long after a newer one was wanted is abandoned for it
  const STALE_MS = 150;
  const PIPELINE = 2;
  const ROTATE_STEPS = 36, ROTATE_FPS = 10;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const IMAGE_TYPE = params.get("format") === "jpeg" ? "image/jpeg" : "image/png";

  const state = {
    config: null,
    token: sessionStorage.getItem("voxelflow.token") || "",
    volume: null, // {key, desc, geo}
    point: null, // the crosshair, LPS mm
    window: null, // {center, width}
    initialWindow: null,
    oblique: null, // {normal, up}
    slab: 20,
    mode: "mip",
    rotating: false,
    azimuth: 0,
    active: "axial",
  };

  // what tests and benchmarks read: each shown frame and its timing (performance.now() ms)
  const log = { frames: [], errors: [] };
  window.voxelviewer = { state, log, panes: null, ready: false };

  function status(text, isError) {
    const el = $("status");
    el.textContent = text;
    el.className = isError ? "error" : "";
    if (isError) log.errors.push(text);
  }

  // -- the API -------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      if (response.status === 401 || response.status === 403) askToken(detail);
      throw new ApiError(response.status, `${response.status}: ${detail}`);
    }
    return response;
  }
  const apiJson = async (path) => (await api(path, { headers: { Accept: "application/json" } })).json();
  const dicomJson = async (path) => (await api(path, { headers: { Accept: "application/dicom+json" } })).json();

  function askToken(message) {
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  // -- volume geometry -----------------------------------------------------------------------------
  function geometry(desc) {
    const A = desc.affine;
    const shape = desc.shape.slice(-3); // z, y, x
    const steps = [0, 1, 2].map((k) => [A[0][k], A[1][k], A[2][k]]);
    const origin = [A[0][3], A[1][3], A[2][3]];
    const toIndex = inverse3([0, 1, 2].map((r) => [A[r][0], A[r][1], A[r][2]]));
    const at = (index) => add(origin, add(add(mul(steps[0], index[0]), mul(steps[1], index[1])), mul(steps[2], index[2])));
    const corners = [];
    for (const a of [-0.5, shape[0] - 0.5]) for (const b of [-0.5, shape[1] - 0.5]) for (const c of [-0.5, shape[2] - 0.5]) corners.push(at([a, b, c]));
    const middle = shape.map((n) => Math.floor((n - 1) / 2)); // the voxel centre the service's views start on
    const center = at(shape.map((n) => (n - 1) / 2));
    const radius = Math.max(...corners.map((p) => norm(sub(p, center))));
    return { shape, steps, origin, toIndex, at, corners, middle, center, radius, spacing: steps.map(norm) };
  }

  // a point moved inside the volume (index space), onto the nearest voxel centre with `round`
  function inside(geo, p, round) {
    const index = apply3(geo.toIndex, sub(p, geo.origin))
      .map((x, k) => Math.min(geo.shape[k] - 1, Math.max(0, round ? Math.round(x) : x)));
    return geo.at(index);
  }
  const snap = (geo, p) => inside(geo, p, true);

  // the store key as a path: its slash stays a slash
  const volumePath = (key) => "/volumes/" + encodeURIComponent(key).replace(/%2F/g, "/");

  // orientation letters of an LPS direction: its large components, largest first
  function letters(v) {
    return [0, 1, 2].filter((k) => Math.abs(v[k]) >= 0.3)
      .sort((a, b) => Math.abs(v[b]) - Math.abs(v[a]))
      .map((k) => LETTERS[k][v[k] > 0 ? 0 : 1]).join("");
  }

  // -- panes ---------------------------------------------------------------------------------------
  class Pane {
    constructor(el) {
      this.el = el;
      this.name = el.dataset.pane;
      this.image = document.createElement("canvas");
      this.image.className = "image";
      this.overlay = document.createElement("canvas");
      this.overlay.className = "overlay";
      el.prepend(this.overlay);
      el.prepend(this.image);
      this.ctx = this.image.getContext("2d", { alpha: false });
      this.octx = this.overlay.getContext("2d");
      const div = (cls, text) => { const d = document.createElement("div"); d.className = cls; if (text) d.textContent = text; el.append(d); return d; };
      div("name", this.name).style.color = COLORS[this.name];
      this.labels = { top: div("orient top"), bottom: div("orient bottom"), left: div("orient left"), right: div("orient right") };
      this.info = div("info");
      this.scalebar = div("scalebar");
      this.scalebar.innerHTML = '<span></span><div class="bar"></div>';
      this.width = 0; this.height = 0; this.dpr = 1;
      this.shown = null; // {url, plane, ...} of the image on the canvas
      this.jobs = []; // requests on the way, oldest first
      this.seq = 0;
      this.wanted = null;
      this.cache = new Map(); // url -> ImageBitmap (the rotating MIP's turns)
    }

    // the canvas size the pane's box asks for now, in device pixels
    wantedSize() {
      const dpr = window.devicePixelRatio || 1;
      const box = this.el.getBoundingClientRect();
      return [Math.max(16, Math.round(box.width * dpr)), Math.max(16, Math.round(box.height * dpr)), dpr];
    }

    resize() {
      const [w, h, dpr] = this.wantedSize();
      if (w === this.width && h === this.height && dpr === this.dpr) return false;
      this.width = w; this.height = h; this.dpr = dpr;
      for (const c of [this.image, this.overlay]) { c.width = w; c.height = h; }
      this.cancel();
      this.shown = null;
      this.cache.clear();
      return true;
    }

    get basis() {
      if (this.name !== "oblique") return VIEWS[this.name];
      // as Plane.oblique with `up`: col = -(up in the plane), row = col x normal
      const n = unit(state.oblique.normal);
      const up = state.oblique.up;
      const col = unit(mul(sub(up, mul(n, dot(up, n))), -1));
      return { row: cross(col, n), col };
    }

    // the plane this pane shows now (what it asks the service for)
    plane() {
      const { row, col } = this.basis;
      const n = cross(row, col);
      const geo = state.volume.geo;
      let s;
      if (this.name === "oblique") {
        s = this.wholeSpacing();
      } else {
        const extent = (v) => { const d = geo.corners.map((p) => dot(p, v)); return Math.max(...d) - Math.min(...d); };
        s = Math.max(extent(row) / this.width, extent(col) / this.height);
      }
      // in the plane: the volume's centre (the image never pans); along the normal: the point
      const center = add(geo.center, mul(n, dot(sub(state.point, geo.center), n)));
      return { center, row, col, normal: n, spacing: s, size: [this.height, this.width] };
    }

    // mm per device pixel that shows the whole volume at any angle (oblique and rotating views)
    wholeSpacing() {
      return (2 * state.volume.geo.radius) / Math.min(this.width, this.height);
    }

    url() {
      const base = volumePath(state.volume.key);
      const w = state.window;
      const win = `window=${+w.center.toFixed(2)},${+w.width.toFixed(2)}`;
      const size = `size=${this.height},${this.width}`;
      if (this.name === "oblique" && state.rotating) {
        return `${base}/projection?azimuth=${state.azimuth}&mode=max&${size}&spacing=${+this.wholeSpacing().toFixed(6)}&${win}`;
      }
      const p = this.plane();
      let q;
      if (this.name === "oblique") {
        q = `normal=${fmt(state.oblique.normal)}&up=${fmt(state.oblique.up)}&center=${fmt(p.center)}`;
        if (state.slab > 0) q += `&slab=${state.slab}&mode=${state.mode}`;
      } else {
        q = `orientation=${this.name}&center=${fmt(p.center)}`;
      }
      return `${base}/mpr?${q}&${size}&spacing=${+p.spacing.toFixed(6)}&${win}`;
    }

    // Ask for the current image. At most PIPELINE requests per pane run at once (the next
    // frame renders on the server while the browser decodes this one); a wish that finds them
    // all busy waits, unless the oldest has run past STALE_MS: that one is cancelled for it. A
    // frame older than the one on the screen is dropped, and showing a frame cancels the older
    // requests still running: scrolling never queues behind old frames.
    update(inputAt) {
      const url = this.url();
      if (this.shown && this.shown.url === url) { this.wanted = null; this.draw(); return; }
      if (this.jobs.some((j) => j.url === url)) { this.wanted = null; this.draw(); return; }
      if (this.wanted && this.wanted.url === url) return;
      this.wanted = { url, inputAt: inputAt || performance.now() };
      if (this.cache.has(url) || this.jobs.length < PIPELINE) this.start();
      else if (performance.now() - this.jobs[0].started > STALE_MS) this.jobs[0].ctrl.abort();
      this.draw();
    }

    get busy() { return this.jobs.length > 0; }

    // whether the pane shows what it asks for now, with nothing on the way; a box that changed
    // size (its resize waits for the layout to settle) will ask for a new image: not idle yet
    idle() {
      if (!this.shown || this.busy || this.wanted || this.shown.url !== this.url()) return false;
      const [w, h, dpr] = this.wantedSize();
      return w === this.width && h === this.height && dpr === this.dpr;
    }

    cancel() {
      for (const job of this.jobs) job.ctrl.abort();
      this.jobs = [];
      this.wanted = null;
    }

    async start() {
      const job = Object.assign({ ctrl: new AbortController(), started: performance.now(), seq: ++this.seq }, this.wanted);
      this.wanted = null;
      this.jobs.push(job);
      try {
        let bitmap = this.cache.get(job.url), plane = null;
        if (!bitmap) {
          const response = await api(job.url, { signal: job.ctrl.signal, headers: { Accept: IMAGE_TYPE } });
          plane = planeFrom(response.headers);
          const blob = await response.blob();
          bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
          if (this.name === "oblique" && state.rotating) {
            if (this.cache.size >= 2 * ROTATE_STEPS) this.cache.delete(this.cache.keys().next().value);
            this.cache.set(job.url, bitmap);
          }
        }
        if (!this.jobs.includes(job) || (this.shown && this.shown.seq > job.seq)) return;
        this.ctx.drawImage(bitmap, 0, 0);
        const shown = performance.now();
        this.shown = { url: job.url, plane, seq: job.seq, inputAt: job.inputAt, shownAt: shown };
        log.frames.push({ pane: this.name, url: job.url, inputAt: job.inputAt, requestedAt: job.started, shownAt: shown });
        if (log.frames.length > 20000) log.frames.splice(0, 10000);
        performance.measure("voxelviewer:" + this.name, { start: job.inputAt, end: shown });
        for (const older of this.jobs) if (older.seq < job.seq) older.ctrl.abort();
        this.draw();
      } catch (err) {
        if (err.name === "AbortError") return;
        status(`${this.name}: ${err.message}`, true);
      } finally {
        const k = this.jobs.indexOf(job);
        if (k >= 0) this.jobs.splice(k, 1);
        if (this.wanted && this.jobs.length < PIPELINE) this.start();
      }
    }

    // the plane of the image on the canvas: the service's own headers, else what was asked
    shownPlane() {
      if (this.shown && this.shown.plane) return this.shown.plane;
      return this.plane();
    }

    // LPS point -> device pixel (i along the row, j down the column)
    toPixel(plane, p) {
      const d = sub(p, plane.center);
      return [dot(d, plane.row) / plane.spacing[1] + (plane.size[1] - 1) / 2,
              dot(d, plane.col) / plane.spacing[0] + (plane.size[0] - 1) / 2];
    }

    toPoint(plane, i, j) {
      return add(plane.center, add(mul(plane.row, (i - (plane.size[1] - 1) / 2) * plane.spacing[1]),
                                   mul(plane.col, (j - (plane.size[0] - 1) / 2) * plane.spacing[0])));
    }

    // the lines where the other panes' planes cut this one, through the point
    lines() {
      const mine = this.shownPlane();
      const n = cross(mine.row, mine.col);
      const out = [];
      for (const other of panes) {
        if (other === this || (other.name === "oblique" && state.rotating)) continue;
        const b = other.basis;
        const d = cross(cross(b.row, b.col), n);
        if (norm(d) < 1e-6) continue;
        const dir = [dot(d, mine.row), dot(d, mine.col)];
        const len = Math.hypot(dir[0], dir[1]);
        out.push({ pane: other.name, dir: [dir[0] / len, dir[1] / len] });
      }
      return out;
    }

    draw() {
      const o = this.octx;
      o.clearRect(0, 0, this.width, this.height);
      if (!state.volume) return;
      const rotatingHere = this.name === "oblique" && state.rotating;
      const plane = this.shownPlane();
      if (!rotatingHere) {
        const [pi, pj] = this.toPixel(plane, state.point);
        const reach = this.width + this.height;
        o.lineWidth = Math.max(1, this.dpr);
        for (const line of this.lines()) {
          o.strokeStyle = COLORS[line.pane];
          o.setLineDash(line.pane === "oblique" ? [6 * this.dpr, 4 * this.dpr] : []);
          o.beginPath();
          o.moveTo(pi - line.dir[0] * reach, pj - line.dir[1] * reach);
          o.lineTo(pi + line.dir[0] * reach, pj + line.dir[1] * reach);
          o.stroke();
        }
        o.setLineDash([]);
        this.labels.right.textContent = letters(plane.row);
        this.labels.left.textContent = letters(mul(plane.row, -1));
        this.labels.bottom.textContent = letters(plane.col);
        this.labels.top.textContent = letters(mul(plane.col, -1));
      } else {
        for (const label of Object.values(this.labels)) label.textContent = "";
      }
      // the scale bar: a round length near a quarter of the pane
      const mmPerCss = (rotatingHere ? this.wholeSpacing() : plane.spacing[1]) * this.dpr;
      const target = (this.el.clientWidth / 4) * mmPerCss;
      const power = Math.pow(10, Math.floor(Math.log10(target)));
      const mm = [5, 2, 1].map((f) => f * power).find((v) => v <= target) || power;
      this.scalebar.firstChild.textContent = `${+mm.toPrecision(3)} mm`;
      this.scalebar.lastChild.style.width = `${mm / mmPerCss}px`;
      let info;
      if (rotatingHere) info = `rotating MIP, azimuth ${state.azimuth}°`;
      else if (this.name === "oblique") info = state.slab > 0 ? `${state.mode.toUpperCase()} slab ${state.slab} mm` : "thin";
      else {
        const index = apply3(state.volume.geo.toIndex, sub(state.point, state.volume.geo.origin));
        const axis = this.scrollAxis();
        info = `slice ${Math.round(index[axis]) + 1} / ${state.volume.geo.shape[axis]}`;
      }
      this.info.textContent = info;
    }

    // the volume axis (0 z, 1 y, 2 x) closest to this pane's normal
    scrollAxis() {
      const { row, col } = this.basis;
      const n = cross(row, col);
      const geo = state.volume.geo;
      let best = 0, score = -1;
      for (let k = 0; k < 3; k++) {
        const c = Math.abs(dot(n, geo.steps[k])) / geo.spacing[k];
        if (c > score) { score = c; best = k; }
      }
      return best;
    }

    // move the point `count` slices along this pane's normal
    scroll(count, inputAt) {
      const geo = state.volume.geo;
      const { row, col } = this.basis;
      const n = cross(row, col);
      if (this.name === "oblique") {
        state.point = inside(geo, add(state.point, mul(n, count * Math.min(...geo.spacing))));
      } else {
        const axis = this.scrollAxis();
        const step = geo.steps[axis];
        const sign = dot(step, n) >= 0 ? 1 : -1; // the slice "after" is the one along the normal
        state.point = snap(geo, add(state.point, mul(step, sign * count)));
      }
      refresh(inputAt);
    }
  }

  function planeFrom(headers) {
    const v = (name) => (headers.get(name) || "").split(",").map(Number);
    if (!headers.get("X-Plane-Center")) return null;
    const spacing = v("X-Plane-Spacing"), size = v("X-Plane-Size");
    return { center: v("X-Plane-Center"), row: v("X-Plane-Row"), col: v("X-Plane-Column"), spacing, size };
  }

  const panes = [...document.querySelectorAll(".pane")].map((el) => new Pane(el));
  const byName = Object.fromEntries(panes.map((p) => [p.name, p]));
  window.voxelviewer.panes = byName;

  function refresh(inputAt) {
    if (!state.volume) return;
    const t = inputAt || performance.now();
    for (const pane of panes) pane.update(t);
    showWindow();
  }

  function showWindow() {
    const w = state.window;
    $("window").textContent = w ? `W ${Math.round(w.width)}  L ${Math.round(w.center)}` : "";
  }

  // -- interaction ---------------------------------------------------------------------------------
  function devicePoint(pane, event) {
    const r = pane.el.getBoundingClientRect();
    return [(event.clientX - r.left) * pane.dpr, (event.clientY - r.top) * pane.dpr];
  }

  function attach(pane) {
    const el = pane.el;
    let drag = null;
    el.addEventListener("pointerdown", (event) => {
      if (!state.volume || event.target.closest(".controls")) return;
      el.focus({ preventScroll: true });
      state.active = pane.name;
      el.setPointerCapture(event.pointerId);
      const at = devicePoint(pane, event);
      drag = { start: at, moved: false, window: Object.assign({}, state.window), kind: "window" };
      // grabbing the oblique plane's line (away from the point itself) rotates the plane
      if (pane.name !== "oblique" && !state.rotating) {
        const plane = pane.shownPlane();
        const [pi, pj] = pane.toPixel(plane, state.point);
        const line = pane.lines().find((l) => l.pane === "oblique");
        const dx = at[0] - pi, dy = at[1] - pj;
        if (line && Math.hypot(dx, dy) > 12 * pane.dpr && Math.abs(dx * line.dir[1] - dy * line.dir[0]) < 6 * pane.dpr) {
          drag.kind = "rotate";
          drag.angle = Math.atan2(dy, dx);
          drag.pivot = [pi, pj];
        }
      }
    });
    el.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const at = devicePoint(pane, event);
      const dx = (at[0] - drag.start[0]) / pane.dpr, dy = (at[1] - drag.start[1]) / pane.dpr;
      if (!drag.moved && Math.hypot(dx, dy) < 3) return;
      drag.moved = true;
      const now = performance.now();
      if (drag.kind === "rotate") {
        const angle = Math.atan2(at[1] - drag.pivot[1], at[0] - drag.pivot[0]);
        let delta = angle - drag.angle;
        // the line has no head: a drag past the point keeps turning the same way
        if (delta > Math.PI / 2) delta -= Math.PI; else if (delta < -Math.PI / 2) delta += Math.PI;
        drag.angle += delta;
        const n = cross(pane.basis.row, pane.basis.col);
        state.oblique = { normal: rotate(state.oblique.normal, n, delta), up: rotate(state.oblique.up, n, delta) };
      } else {
        // right: wider; down: a higher level (darker)
        const w = drag.window;
        const scale = Math.max(w.width, 1);
        state.window = { center: w.center + (dy * scale) / 300, width: Math.max(1, w.width * Math.pow(2, dx / 150)) };
      }
      refresh(now);
    });
    const end = (event) => {
      if (!drag) return;
      if (!drag.moved && event.type === "pointerup") {
        const [i, j] = devicePoint(pane, event);
        state.point = snap(state.volume.geo, pane.toPoint(pane.shownPlane(), i, j));
        refresh(performance.now());
      }
      drag = null;
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    el.addEventListener("wheel", (event) => {
      if (!state.volume) return;
      event.preventDefault();
      state.active = pane.name;
      if (pane.name === "oblique" && state.rotating) return;
      // down: against the normal (axial: towards the feet), up: along it, one slice a notch
      pane.scroll(event.deltaY > 0 ? -1 : 1, performance.now());
    }, { passive: false });
    el.addEventListener("pointerenter", () => { state.active = pane.name; });
  }
  panes.forEach(attach);

  document.addEventListener("keydown", (event) => {
    if (!state.volume || event.target.closest("input, select, form")) return;
    const pane = byName[state.active];
    const steps = { ArrowUp: 1, ArrowDown: -1, ArrowLeft: -1, ArrowRight: 1, PageUp: 10, PageDown: -10 };
    if (event.key in steps) {
      event.preventDefault();
      if (!(pane.name === "oblique" && state.rotating)) pane.scroll(steps[event.key], performance.now());
    } else if (event.key === "r" || event.key === "R") {
      reset();
    }
  });

  function reset() {
    if (!state.volume) return;
    const geo = state.volume.geo;
    state.point = geo.at(geo.middle);
    state.window = Object.assign({}, state.initialWindow);
    // a coronal plane turned 30 degrees about the patient's long axis, head up
    state.oblique = { normal: rotate([0, 1, 0], [0, 0, 1], Math.PI / 6), up: [0, 0, 1] };
    setRotating(false);
    refresh();
  }
  $("reset").addEventListener("click", reset);

  $("slab").addEventListener("input", () => {
    const v = Number($("slab").value);
    if (!(v >= 0)) return;
    state.slab = v;
    refresh();
  });
  $("mode").addEventListener("change", () => { state.mode = $("mode").value; refresh(); });

  let rotateTimer = null;
  function setRotating(on) {
    state.rotating = on;
    $("rotate").setAttribute("aria-pressed", String(on));
    clearInterval(rotateTimer);
    rotateTimer = null;
    if (on) {
      rotateTimer = setInterval(() => {
        const oblique = byName.oblique;
        // the next turn only once this one is on the screen: a slow render slows the turn
        if (oblique.busy || oblique.wanted) return;
        state.azimuth = (state.azimuth + 360 / ROTATE_STEPS) % 360;
        oblique.update();
      }, 1000 / ROTATE_FPS);
    } else {
      byName.oblique.cache.clear();
    }
    refresh();
  }
  $("rotate").addEventListener("click", () => setRotating(!state.rotating));

  function buildPresets() {
    const box = $("presets");
    box.textContent = "";
    const chosen = ["soft_tissue", "lung", "bone", "brain", "liver", "mediastinum"];
    for (const name of chosen) {
      const value = state.config.presets[name];
      if (!value) continue;
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.preset = name;
      b.textContent = name.replace("_", " ");
      b.title = `W ${value[1]} L ${value[0]} (HU)`;
      b.addEventListener("click", () => { state.window = { center: value[0], width: value[1] }; refresh(); });
      box.append(b);
    }
    box.hidden = !(state.volume && state.volume.desc.modality === "CT");
  }

  // a pane that changes size (the window, the header wrapping) asks for images of its new size
  let resizeTimer = null;
  new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (panes.map((p) => p.resize()).some(Boolean)) refresh(); }, 50);
  }).observe($("panes"));

  // -- choosing what to show -----------------------------------------------------------------------
  const tag = (item, t) => (item[t] && item[t].Value ? item[t].Value[0] : "");
  function person(v) { return v && typeof v === "object" ? v.Alphabetic || "" : v || ""; }

  function fill(select, options) {
    select.textContent = "";
    for (const [value, text] of options) {
      const o = document.createElement("option");
      o.value = value; o.textContent = text;
      select.append(o);
    }
  }

  async function loadStudies() {
    const studies = await dicomJson("/dicom-web/studies");
    fill($("study"), studies.map((s) => {
      const uid = tag(s, "0020000D");
      const text = [person(tag(s, "00100010")), tag(s, "00080020"), tag(s, "00081030"),
                    (s["00080061"] && s["00080061"].Value || []).join("/"), `${tag(s, "00201206")} series`].filter(Boolean).join("  ");
      return [uid, text || uid];
    }));
    return studies.map((s) => tag(s, "0020000D"));
  }

  async function loadSeries(study) {
    const series = await dicomJson(`/dicom-web/studies/${study}/series`);
    series.sort((a, b) => (Number(tag(a, "00200011")) || 0) - (Number(tag(b, "00200011")) || 0));
    fill($("series"), series.map((s) => {
      const uid = tag(s, "0020000E");
      const text = [`#${tag(s, "00200011")}`, tag(s, "00080060"), tag(s, "0008103E"), `${tag(s, "00201209")} images`].filter(Boolean).join("  ");
      return [uid, text];
    }));
    return series.map((s) => tag(s, "0020000E"));
  }

  // show a series: its volume `key` when it holds that one, else its first
  async function chooseSeries(series, key) {
    const volumes = (await apiJson("/volumes")).filter((v) => v.series_instance_uid === series);
    fill($("volume"), volumes.map((v) => [v.key, `${v.key.split("/").pop()}: ${v.shape.join(" x ")}`]));
    $("volume-label").hidden = volumes.length < 2;
    if (!volumes.length) throw new Error(`series ${series} holds no volume`);
    await openVolume(volumes.some((v) => v.key === key) ? key : volumes[0].key);
  }

  async function initialWindow(key, desc) {
    const stored = (desc.windows || [])[0];
    if (stored && stored.width > 0) return { center: stored.center, width: stored.width };
    // no stored window: the 1st..99th percentile of a coarse axial view's modality values
    const path = `${volumePath(key)}/mpr?orientation=axial&size=64`;
    const values = new Float32Array(await (await api(path, { headers: { Accept: "application/octet-stream" } })).arrayBuffer());
    const sorted = Array.from(values).filter(Number.isFinite).sort((a, b) => a - b);
    if (!sorted.length) return { center: 0.5, width: 1 };
    const lo = sorted[Math.floor(sorted.length * 0.01)], hi = sorted[Math.floor(sorted.length * 0.99)];
    return { center: (lo + hi) / 2, width: Math.max(1, hi - lo) };
  }

  async function openVolume(key) {
    window.voxelviewer.ready = false; // until the panes ask for this volume's images
    const desc = await apiJson(volumePath(key));
    if (desc.shape.length !== 3) {
      status(`${key}: ${desc.shape.length}-D volumes are not shown here (the viewer shows 3-D volumes)`, true);
      return;
    }
    const win = await initialWindow(key, desc);
    state.volume = { key, desc, geo: geometry(desc) };
    state.initialWindow = win;
    $("volume").value = key;
    buildPresets();
    panes.forEach((p) => { p.resize(); p.cancel(); p.shown = null; p.cache.clear(); });
    reset();
    status(`${key}: ${desc.shape.join(" x ")} voxels, ${desc.spacing.map((s) => +s.toFixed(3)).join(" x ")} mm, ${desc.modality || ""}`);
    window.voxelviewer.ready = true;
  }

  async function start() {
    try {
      state.config = await (await fetch("config.json")).json();
      if (state.config.token_required && !state.token) { askToken(""); return; }
      const wanted = { study: params.get("study"), series: params.get("series"), volume: params.get("volume") };
      const studies = await loadStudies();
      if (!studies.length) { status("the store holds no study yet"); return; }
      if (wanted.volume) {
        const all = await apiJson("/volumes");
        const v = all.find((x) => x.key === wanted.volume);
        if (!v) throw new Error(`no volume ${wanted.volume} in the store`);
        $("study").value = v.study_instance_uid;
        await loadSeries(v.study_instance_uid);
        $("series").value = v.series_instance_uid;
        await chooseSeries(v.series_instance_uid, v.key);
        return;
      }
      const study = wanted.study && studies.includes(wanted.study) ? wanted.study : studies[0];
      $("study").value = study;
      const series = await loadSeries(study);
      const first = wanted.series && series.includes(wanted.series) ? wanted.series : series[0];
      $("series").value = first;
      await chooseSeries(first);
    } catch (err) {
      status(err.message, true);
    }
  }

  $("study").addEventListener("change", async () => {
    try { const s = await loadSeries($("study").value); if (s.length) await chooseSeries(s[0]); } catch (err) { status(err.message, true); }
  });
  $("series").addEventListener("change", () => chooseSeries($("series").value).catch((err) => status(err.message, true)));
  $("volume").addEventListener("change", () => openVolume($("volume").value).catch((err) => status(err.message, true)));
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("voxelflow.token", state.token);
    $("login").hidden = true;
    start();
  });

  start();
})();
