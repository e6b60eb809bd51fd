// Conveyor console: the small amount of behaviour the server-rendered pages need.
// Live job rows, progress, log tail and output previews poll the console's JSON routes;
// everything the server sends is put in the page as text (textContent), never as HTML.
(function () {
  "use strict";

  const base = document.body.dataset.base || "";
  const page = document.body.dataset.page || "";
  const TERMINAL = ["Completed", "Failed", "Stopped"];

  async function getJSON(path) {
    const response = await fetch(base + path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.status === 401) {
      window.location.reload(); // the session ended: the server sends the page to sign-in
      throw new Error("signed out");
    }
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response.json();
  }

  function poll(task, intervalMs) {
    let timer = null;
    async function tick() {
      let again = true;
      try { again = (await task()) !== false; } catch (_) { again = true; }
      if (again) timer = window.setTimeout(tick, document.hidden ? intervalMs * 3 : intervalMs);
    }
    tick();
    return () => window.clearTimeout(timer);
  }

  function setBadge(badge, status) {
    if (!badge) return;
    badge.className = "status status-" + status.toLowerCase();
    badge.textContent = status;
  }

  function setProgress(bar, state) {
    if (!bar) return;
    bar.setAttribute("aria-valuenow", String(state.percent));
    const fill = bar.querySelector(".progress-fill");
    fill.style.width = state.bar + "%";
    fill.classList.toggle("is-failed", state.status === "Failed");
    fill.classList.toggle("is-stopped", state.terminal && state.status !== "Completed" && state.status !== "Failed");
  }

  // --- Dropdown menus ------------------------------------------------------------------

  function initDropdowns() {
    document.querySelectorAll("[data-dropdown]").forEach((dropdown) => {
      const toggle = dropdown.querySelector("[data-dropdown-toggle]");
      const menu = dropdown.querySelector(".menu");
      const close = () => { menu.hidden = true; toggle.setAttribute("aria-expanded", "false"); };
      toggle.addEventListener("click", (event) => {
        event.stopPropagation();
        menu.hidden = !menu.hidden;
        toggle.setAttribute("aria-expanded", String(!menu.hidden));
      });
      document.addEventListener("click", close);
      document.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });
    });
  }

  // --- Batch transform jobs list -------------------------------------------------------

  function initJobList() {
    const table = document.getElementById("jobs-table");
    if (!table) return;
    const form = document.getElementById("stop-form");
    const selectAll = document.getElementById("select-all");
    const stopItem = document.querySelector('[data-action="stop"]');
    const cloneItem = document.querySelector('[data-action="clone"]');
    const boxes = () => Array.from(table.querySelectorAll('tbody input[type="checkbox"][name="name"]'));
    const selectedRows = () => boxes().filter((box) => box.checked).map((box) => box.closest("tr"));

    function refreshActions() {
      const rows = selectedRows();
      stopItem.disabled = rows.length === 0 || rows.some((row) => row.dataset.status !== "InProgress");
      cloneItem.disabled = rows.length !== 1;
      const all = boxes();
      selectAll.checked = all.length > 0 && rows.length === all.length;
      selectAll.indeterminate = rows.length > 0 && rows.length < all.length;
      all.forEach((box) => box.closest("tr").classList.toggle("is-selected", box.checked));
    }

    table.addEventListener("change", refreshActions);
    selectAll.addEventListener("change", () => {
      boxes().forEach((box) => { box.checked = selectAll.checked; });
      refreshActions();
    });
    stopItem.addEventListener("click", () => { if (!stopItem.disabled) form.submit(); });
    cloneItem.addEventListener("click", () => {
      const rows = selectedRows();
      if (rows.length === 1) window.location.href = base + "/jobs/create?clone=" + encodeURIComponent(rows[0].dataset.job);
    });
    refreshActions();

    // Running jobs update in place: status, duration and progress.
    poll(async () => {
      const live = Array.from(table.querySelectorAll("tbody tr[data-job]")).filter((row) => !TERMINAL.includes(row.dataset.status));
      if (live.length === 0) return false;
      const query = live.map((row) => "name=" + encodeURIComponent(row.dataset.job)).join("&");
      const data = await getJSON("/api/jobs?" + query);
      data.jobs.forEach((state) => {
        const row = live.find((candidate) => candidate.dataset.job === state.name);
        if (!row) return;
        row.dataset.status = state.status;
        setBadge(row.querySelector("[data-status-badge]"), state.status);
        row.querySelector('[data-cell="duration"]').textContent = state.duration;
        setProgress(row.querySelector(".progress"), state);
        row.querySelector(".progress-text").textContent = state.objects_text;
      });
      refreshActions();
      return true;
    }, 2000);
  }

  // --- Key/value rows (environment variables, tags) ------------------------------------

  function initRows() {
    document.querySelectorAll("[data-rows]").forEach((group) => {
      const list = group.querySelector(".row-list");
      const template = group.querySelector("template");
      group.querySelector("[data-add-row]").addEventListener("click", () => {
        const row = template.content.firstElementChild.cloneNode(true);
        list.appendChild(row);
        row.querySelector("input").focus();
      });
      list.addEventListener("click", (event) => {
        const button = event.target.closest("[data-remove-row]");
        if (button) button.closest(".kv-row").remove();
      });
    });
  }

  // --- Create model: image field only for images ---------------------------------------

  function initRuntimeChoice() {
    const imageField = document.querySelector("[data-runtime-image]");
    if (!imageField) return;
    const update = () => {
      const chosen = document.querySelector('input[name="runtime"]:checked');
      imageField.hidden = !chosen || chosen.value !== "image";
    };
    document.querySelectorAll('input[name="runtime"]').forEach((radio) => radio.addEventListener("change", update));
    update();
  }

  function initConfirmations() {
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  // --- Job detail: progress, log tail, outputs, previews -------------------------------

  function initJobDetail() {
    const header = document.getElementById("job");
    if (!header) return;
    const name = header.dataset.job;
    const path = "/api/jobs/" + encodeURIComponent(name);
    const live = (key) => document.querySelector('[data-live="' + key + '"]');
    let finished = TERMINAL.includes(header.dataset.status);

    function showState(state) {
      header.dataset.status = state.status;
      setBadge(header.querySelector("[data-status-badge]"), state.status);
      ["status-text", "started", "ended", "duration", "objects_finished", "objects_total", "objects_failed", "records", "failed_records",
        "bytes_in", "bytes_total", "rate", "records_rate", "model_busy", "eta"].forEach((key) => {
        const element = live(key);
        const value = key === "status-text" ? state.status : state[key];
        if (element) element.textContent = String(value);
      });
      live("percent").textContent = state.percent + "%";
      setProgress(live("progressbar"), state);
      const failure = document.getElementById("failure-reason");
      failure.hidden = !state.failure;
      live("failure").textContent = state.failure;
      const stopForm = document.getElementById("stop-job-form");
      stopForm.hidden = state.terminal;
      document.getElementById("stop-job").disabled = state.status === "Stopping";
      document.querySelector("[data-live-indicator]").hidden = state.terminal;
    }

    // Log tail: follows new lines, keeps the view at the bottom unless the reader scrolled up.
    const log = document.getElementById("log");
    let position = "";
    let reading = null;
    function readLog() { // one read at a time, so no line is shown twice
      if (!reading) reading = readLogPages().finally(() => { reading = null; });
      return reading;
    }
    async function readLogPages() {
      for (let pages = 0; pages < 20; pages++) {
        const data = await getJSON(path + "/logs" + (position ? "?after=" + encodeURIComponent(position) : ""));
        if (data.events.length) {
          const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
          const empty = document.getElementById("log-empty");
          if (empty) empty.remove();
          const fragment = document.createDocumentFragment();
          data.events.forEach((event) => {
            const line = document.createElement("div");
            line.className = "log-line";
            const time = document.createElement("span");
            time.className = "log-time";
            time.textContent = event.time + " ";
            const stream = document.createElement("span");
            stream.className = "log-stream";
            stream.textContent = event.stream + " ";
            const message = document.createElement("span");
            message.textContent = event.message;
            line.append(time, stream, message);
            fragment.appendChild(line);
          });
          log.appendChild(fragment);
          if (stick) log.scrollTop = log.scrollHeight;
        }
        position = data.position || position;
        if (!data.more) return;
      }
    }

    async function refreshOutputs() {
      const data = await getJSON(path + "/outputs");
      const body = document.querySelector("#outputs-table tbody");
      body.replaceChildren();
      data.objects.forEach((item) => {
        const row = document.createElement("tr");
        row.dataset.object = item.name;
        const nameCell = document.createElement("td");
        nameCell.className = "mono";
        nameCell.textContent = item.name;
        const sizeCell = document.createElement("td");
        sizeCell.className = "right nowrap";
        sizeCell.textContent = item.size;
        const actionCell = document.createElement("td");
        actionCell.className = "right";
        const button = document.createElement("button");
        button.type = "button";
        button.className = "btn btn-normal btn-small";
        button.dataset.preview = item.name;
        button.textContent = "Preview";
        actionCell.appendChild(button);
        row.append(nameCell, sizeCell, actionCell);
        body.appendChild(row);
      });
      if (!data.objects.length) {
        const row = document.createElement("tr");
        row.className = "empty";
        const cell = document.createElement("td");
        cell.colSpan = 3;
        cell.textContent = finished ? "No output objects." : "Output objects appear here as input objects finish.";
        row.appendChild(cell);
        body.appendChild(row);
      }
      live("outputs-count").textContent = "(" + data.objects.length + (data.truncated ? "+" : "") + ")";
    }

    document.getElementById("outputs-table").addEventListener("click", async (event) => {
      const button = event.target.closest("[data-preview]");
      if (!button) return;
      const panel = document.getElementById("preview");
      const text = document.getElementById("preview-text");
      const note = document.getElementById("preview-note");
      document.getElementById("preview-name").textContent = button.dataset.preview;
      note.textContent = "loading…";
      text.textContent = "";
      panel.hidden = false;
      try {
        const data = await getJSON(path + "/preview?object=" + encodeURIComponent(button.dataset.preview));
        text.textContent = data.text;
        if (data.binary) note.textContent = "binary content, first bytes in hex" + (data.truncated ? " (more not shown)" : "");
        else note.textContent = "first " + data.lines + (data.lines === 1 ? " line" : " lines") + (data.truncated ? " (more not shown)" : "");
      } catch (error) {
        note.textContent = "";
        text.textContent = "Cannot preview: " + error.message;
      }
      panel.scrollIntoView({ block: "nearest" });
    });
    document.getElementById("preview-close").addEventListener("click", () => { document.getElementById("preview").hidden = true; });

    let outputsSeen = -1;
    readLog().catch(() => {});
    if (finished) return;
    poll(async () => {
      const state = await getJSON(path);
      showState(state);
      await readLog();
      if (state.objects_done !== outputsSeen || state.terminal) {
        outputsSeen = state.objects_done;
        await refreshOutputs();
      }
      if (state.terminal) {
        finished = true;
        await readLog(); // lines written as the job ended
        return false;
      }
      return true;
    }, 1500);
  }

  initDropdowns();
  initRows();
  initRuntimeChoice();
  initConfirmations();
  if (page === "jobs") initJobList();
  if (page === "job-detail") initJobDetail();
})();
