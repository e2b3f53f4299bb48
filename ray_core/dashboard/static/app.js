// The dashboard's one script. A page per location hash (#overview, #tasks?state=FAILED,
// #logs?actor_id=...): its controls are built when the hash changes, its data is asked of
// /api/ and drawn again every poll_ms, so a page follows the cluster without reloading.
// Text from the cluster only ever goes in through textContent.
"use strict";

let pollMs = 1000;
let current = null;     // {name, query, root}: the page on screen
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function amount(name, value) {
  return name.includes("memory") ? bytes(value) : String(+value.toFixed(2));
}

function when(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

function short(id) {
  return id ? id.slice(0, 12) : "";
}

function stateCell(state) {
  return el("td", { class: `state state-${state}`, text: state || "" });
}

// A table of `rows`; columns are [header, row => text or Node]; rowAttrs(row) tags a row.
function table(id, columns, rows, rowAttrs) {
  const head = el("tr", {}, ...columns.map(([header]) => el("th", { text: header })));
  const body = rows.map(row => el("tr", rowAttrs ? rowAttrs(row) : {},
    ...columns.map(([, cell]) => {
      const value = cell(row);
      return value instanceof HTMLTableCellElement ? value : el("td", {}, value ?? "");
    })));
  if (!rows.length) {
    body.push(el("tr", {}, el("td", { colspan: columns.length, text: "(none)" })));
  }
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body));
}

function logLink(params, text) {
  return el("a", { class: "log-link", href: `#logs?${new URLSearchParams(params)}` },
            text || "logs");
}

// ---- pages: each {setup(query, controls) (optional), draw(query) -> Node} ----------

const pages = {};

pages.overview = {
  async draw() {
    const cluster = await api("/api/cluster");
    const cards = el("div", { class: "cards" },
      el("div", { class: "card" }, el("div", { text: "Alive nodes" }),
         el("div", { class: "value", id: "node-count", text: cluster.num_alive })),
      el("div", { class: "card" }, el("div", { text: "Dead nodes" }),
         el("div", { class: "value", id: "dead-node-count", text: cluster.num_dead })),
      ...["CPU", "GPU", "memory", "object_store_memory"]
        .filter(name => cluster.resources[name])
        .map(name => el("div", { class: "card" }, el("div", { text: name }),
          el("div", { class: "value", id: `use-${name}` },
             `${amount(name, cluster.resources[name].used)} / ` +
             `${amount(name, cluster.resources[name].total)}`))));
    const nodes = table("nodes-table", [
      ["Node", n => short(n.node_id)], ["IP", n => n.node_ip],
      ["Head", n => (n.is_head_node ? "yes" : "")], ["State", n => stateCell(n.state)],
      ["CPU", n => use(n, "CPU")], ["GPU", n => use(n, "GPU")],
      ["Memory", n => use(n, "memory")],
      ["Object store", n => n.object_store_capacity_bytes === undefined ? "" :
        `${bytes(n.object_store_used_bytes)} / ${bytes(n.object_store_capacity_bytes)}`],
      ["Workers", n => n.num_workers ?? ""],
      ["Logs", n => (n.state === "ALIVE" ? logLink({ node_id: n.node_id }) : "")],
    ], cluster.nodes, n => ({ "data-node-id": n.node_id }));
    return el("div", {}, cards, el("h2", { text: "Nodes" }), nodes);
  },
};

function use(node, name) {
  const total = node.resources_total[name];
  if (!total) return "";
  const used = (node.resources_used || {})[name] || 0;
  return `${amount(name, used)} / ${amount(name, total)}`;
}

pages.jobs = {
  async draw() {
    const jobs = await api("/api/jobs");
    return table("jobs-table", [
      ["Job", j => j.job_id], ["Status", j => stateCell(j.status)],
      ["Entrypoint", j => j.entrypoint], ["Driver pid", j => (j.driver_info || {}).pid],
      ["Started", j => when(j.start_time)], ["Ended", j => when(j.end_time)],
      ["Namespace", j => j.ray_namespace],
    ], jobs, j => ({ "data-job-id": j.job_id }));
  },
};

pages.actors = {
  async draw() {
    const actors = await api("/api/actors");
    return table("actors-table", [
      ["Actor", a => short(a.actor_id)], ["Class", a => a.class_name],
      ["Name", a => a.name], ["State", a => stateCell(a.state)],
      ["Restarts", a => `${a.num_restarts ?? 0} / ${a.max_restarts ?? 0}`],
      ["Pid", a => a.pid], ["Node", a => short(a.node_id)], ["Job", a => a.job_id],
      ["Death cause", a => (a.death_cause ? a.death_cause.error_message : "")],
      ["Logs", a => (a.pid ? logLink({ actor_id: a.actor_id }) : "")],
    ], actors, a => ({ "data-actor-id": a.actor_id, "data-state": a.state }));
  },
};

const TASK_STATES = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
                     "RUNNING", "FINISHED", "FAILED"];
const CHART_COLORS = { PENDING: "#c90", RUNNING: "#27c", FINISHED: "#2a2", FAILED: "#c22" };

pages.tasks = {
  setup(query, controls) {
    const state = el("select", { id: "task-filter-state" }, el("option", { value: "" }, "any state"),
      ...TASK_STATES.map(s => el("option", { value: s }, s)));
    state.value = query.get("state") || "";
    const name = el("input", { id: "task-filter-name", placeholder: "name",
                               value: query.get("name") || "" });
    const job = el("input", { id: "task-filter-job", placeholder: "job id",
                              value: query.get("job_id") || "" });
    const apply = () => {
      const params = new URLSearchParams();
      if (state.value) params.set("state", state.value);
      if (name.value) params.set("name", name.value);
      if (job.value) params.set("job_id", job.value);
      location.hash = `tasks?${params}`;
    };
    for (const input of [state, name, job]) input.addEventListener("change", apply);
    controls.append(el("div", { class: "filters" }, "Filter:", state, name, job));
  },
  async draw(query) {
    const filters = new URLSearchParams();
    for (const key of ["state", "name", "job_id"]) {
      if (query.get(key)) filters.set(key, query.get(key));
    }
    const [tasks, series] = await Promise.all([api(`/api/tasks?${filters}`),
                                               api("/api/tasks/timeline_counts")]);
    const counts = el("p", { id: "task-counts" },
      `${tasks.total} task attempt(s): ` + Object.entries(tasks.counts)
        .map(([s, n]) => `${s} ${n}`).join(", "));
    const rows = table("tasks-table", [
      ["Task", t => short(t.task_id)], ["Attempt", t => t.attempt_number],
      ["Name", t => t.name], ["State", t => stateCell(t.state)],
      ["Error type", t => el("td", { class: "error-type", text: t.error_type || "" })],
      ["Error", t => (t.error_message || "").split("\n").slice(-2).join(" ")],
      ["Job", t => t.job_id], ["Node", t => short(t.node_id)], ["Pid", t => t.worker_pid],
      ["Created", t => when(t.creation_time_ms)],
      ["Logs", t => (t.worker_pid ? logLink({ task_id: t.task_id }) : "")],
    ], tasks.tasks, t => ({ "data-task-id": t.task_id, "data-state": t.state }));
    return el("div", {}, el("h2", { text: "Tasks by state over time" }), chart(series.points),
              counts, rows);
  },
};

function chart(points) {
  const width = 720, height = 200, pad = 30;
  const svg = svgEl("svg", { id: "task-chart", width, height });
  const states = Object.keys(CHART_COLORS);
  const top = Math.max(1, ...points.flatMap(p => states.map(s => p[s])));
  const x = i => pad + (i * (width - 2 * pad)) / Math.max(points.length - 1, 1);
  const y = v => height - pad - (v * (height - 2 * pad)) / top;
  svg.append(svgEl("line", { x1: pad, y1: y(0), x2: width - pad, y2: y(0), stroke: "#999" }));
  const label = svgEl("text", { x: 2, y: y(top) + 4, "font-size": 10 });
  label.textContent = String(top);
  svg.append(label);
  for (const state of states) {
    svg.append(svgEl("polyline", {
      fill: "none", stroke: CHART_COLORS[state], "stroke-width": 2, "data-state": state,
      points: points.map((p, i) => `${x(i)},${y(p[state])}`).join(" ") }));
  }
  const legend = el("div", { class: "legend" }, ...states.map(s =>
    el("span", { style: `color: ${CHART_COLORS[s]}` }, `■ ${s}`)));
  return el("div", {}, svg, legend);
}

pages.placement_groups = {
  async draw() {
    const groups = await api("/api/placement_groups");
    return table("placement-groups-table", [
      ["Placement group", g => g.placement_group_id], ["Name", g => g.name],
      ["State", g => stateCell(g.state)], ["Job", g => g.creator_job_id],
      ["Bundles", g => JSON.stringify((g.bundles || []).map(b => b.unit_resources || b))],
      ["Strategy", g => (g.stats || {}).strategy || ""],
    ], groups, g => ({ "data-placement-group-id": g.placement_group_id }));
  },
};

pages.objects = {
  async draw() {
    const objects = await api("/api/objects");
    const stores = table("stores-table", [
      ["Node", s => short(s.node_id)], ["IP", s => s.node_ip],
      ["Used", s => bytes(s.used_bytes)], ["Capacity", s => bytes(s.capacity_bytes)],
      ["Spilled now", s => `${bytes(s.spilled_bytes)} (${s.num_spilled_objects} objects)`],
      ["Restored (total)", s => bytes(s.total_restored_bytes)],
    ], objects.stores);
    const rows = table("objects-table", [
      ["Object", o => o.object_id], ["Size", o => bytes(o.object_size)],
      ["Reference", o => o.reference_type], ["Task state", o => o.task_status],
      ["Where", o => o.where], ["Pid", o => o.pid], ["IP", o => o.ip],
    ], objects.objects.slice(0, 1000));
    return el("div", {}, el("h2", { text: "Object store per node" }), stores,
              el("h2", { text: "Objects" }), rows);
  },
};

pages.logs = {
  async draw(query) {
    const target = ["filename", "actor_id", "task_id"].find(key => query.get(key));
    const wrap = el("div", {});
    const cluster = await api("/api/cluster");
    const alive = cluster.nodes.filter(n => n.state === "ALIVE");
    const nodeId = query.get("node_id") || (alive.find(n => n.is_head_node) || {}).node_id;
    const picker = el("select", { id: "log-node" }, ...alive.map(n =>
      el("option", { value: n.node_id }, `${short(n.node_id)} ${n.node_ip}` +
         (n.is_head_node ? " (head)" : ""))));
    if (nodeId) picker.value = nodeId;
    picker.addEventListener("change", () => { location.hash = `logs?node_id=${picker.value}`; });
    wrap.append(el("div", { class: "filters" }, "Node:", picker));
    if (!target) {
      const files = await api(`/api/logs?node_id=${encodeURIComponent(nodeId || "")}`);
      const list = el("div", { class: "log-files", id: "log-files" });
      for (const [category, names] of Object.entries(files)) {
        list.append(el("h3", { text: category }),
          ...names.map(name => logLink({ node_id: nodeId, filename: name }, name)));
      }
      wrap.append(list);
      return wrap;
    }
    const params = new URLSearchParams({ tail: "1000" });
    for (const key of ["node_id", "filename", "actor_id", "task_id", "suffix"]) {
      if (query.get(key)) params.set(key, query.get(key));
    }
    const log = await api(`/api/logs/file?${params}`);
    const previous = document.getElementById("log-text");
    const atBottom = !previous ||
      previous.scrollTop + previous.clientHeight >= previous.scrollHeight - 4;
    const text = el("pre", { id: "log-text", text: log.text });
    wrap.append(el("h3", { id: "log-title", text: `${target}: ${query.get(target)}` }), text);
    if (!atBottom) {
      const scroll = previous.scrollTop;
      requestAnimationFrame(() => { text.scrollTop = scroll; });
    } else {
      requestAnimationFrame(() => { text.scrollTop = text.scrollHeight; });
    }
    return wrap;
  },
};

// ---- the loop ------------------------------------------------------------------------

function route() {
  const [name, search] = location.hash.slice(1).split("?");
  return { name: pages[name] ? name : "overview", query: new URLSearchParams(search || "") };
}

function show() {
  const { name, query } = route();
  const controls = el("div", { id: "controls" });
  const data = el("div", { id: "data" });
  const root = document.getElementById("page");
  root.replaceChildren(controls, data);
  root.dataset.page = name;
  current = { name, query, data };
  if (pages[name].setup) pages[name].setup(query, controls);
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#${name}`);
  }
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  const page = current;
  const error = document.getElementById("error");
  try {
    const content = await pages[page.name].draw(page.query);
    if (page !== current) return;      // the hash changed meanwhile: that page draws itself
    page.data.replaceChildren(content);
    error.hidden = true;
    document.getElementById("updated").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (page !== current) return;
    error.textContent = String(e.message || e);
    error.hidden = false;
  }
  timer = setTimeout(refresh, pollMs);
}

async function start() {
  try {
    pollMs = (await api("/api/config")).poll_ms;
  } catch (e) {
    // refused (no login) or unreachable: the first refresh says which
  }
  window.addEventListener("hashchange", show);
  show();
}

start();
