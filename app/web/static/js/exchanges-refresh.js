// Refresh the first page of the exchange list every few seconds from the JSON
// API, filling a cloned row template with textContent so stored text stays inert.

const REFRESH_MS = 5000;

const table = document.getElementById("exchange-table");
const template = document.getElementById("exchange-row-template");

function buildRow(row) {
  const element = template.content.querySelector("tr").cloneNode(true);
  element.dataset.outcome = row.outcome || "";
  element.dataset.id = row.id;
  for (const cell of element.querySelectorAll("[data-field]")) {
    cell.textContent = row.display[cell.dataset.field] ?? "";
  }
  element.querySelector("a[data-field=time]").href = `/exchanges/${encodeURIComponent(row.id)}`;
  return element;
}

async function refresh() {
  const response = await fetch(table.dataset.source, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    return;
  }
  const page = await response.json();
  const body = table.tBodies[0];
  const known = new Set([...body.rows].map((row) => row.dataset.id));
  const rows = page.rows.map((row) => {
    const element = buildRow(row);
    if (known.size && !known.has(row.id)) {
      element.classList.add("fresh");
    }
    return element;
  });
  body.replaceChildren(...rows);
  document.getElementById("no-exchanges")?.remove();
}

if (table && template && table.dataset.refresh === "on") {
  setInterval(() => {
    if (!document.hidden) {
      refresh().catch(() => {});
    }
  }, REFRESH_MS);
}
