// Live mode of the exchange list: new exchanges arrive as server-sent events
// and are added on top. Rows are filled with textContent from a cloned
// template, so stored prompts and answers stay inert text.

const MAX_ROWS = 500;

const table = document.getElementById("exchange-table");
const template = document.getElementById("exchange-row-template");
const toggle = document.getElementById("live-toggle");
const status = document.getElementById("live-status");

let source = null;

function buildRow(row) {
  const element = template.content.querySelector("tr").cloneNode(true);
  element.dataset.id = row.id;
  element.dataset.outcome = row.outcome || "";
  for (const cell of element.querySelectorAll("[data-field]")) {
    cell.textContent = row.display[cell.dataset.field] ?? "";
  }
  const query = table.dataset.detailQuery;
  const link = element.querySelector("a[data-field=time]");
  link.href = `/exchanges/${encodeURIComponent(row.id)}${query ? `?${query}` : ""}`;
  return element;
}

function addRow(row) {
  const body = table.tBodies[0];
  body.querySelector(`tr[data-id="${CSS.escape(row.id)}"]`)?.remove();
  const element = buildRow(row);
  element.classList.add("fresh");
  body.prepend(element);
  while (body.rows.length > MAX_ROWS) {
    body.lastElementChild.remove();
  }
  document.getElementById("no-exchanges")?.remove();
}

function start() {
  source = new EventSource(table.dataset.liveSource);
  source.addEventListener("open", () => {
    status.textContent = "waiting for new exchanges";
  });
  source.addEventListener("exchange", (event) => {
    addRow(JSON.parse(event.data));
    status.textContent = `last update ${new Date().toLocaleTimeString()}`;
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting";
  });
}

function stop() {
  source?.close();
  source = null;
  status.textContent = "paused";
}

if (table && template && toggle) {
  toggle.addEventListener("change", () => (toggle.checked ? start() : stop()));
  if (toggle.checked) {
    start();
  }
}
