// Draw the overview charts with uPlot from the JSON block the page embeds.

const data = JSON.parse(document.getElementById("chart-data").textContent);

const COLORS = ["#2456c7", "#b42318", "#0e9384", "#c4320a", "#6941c6"];

const CHARTS = {
  requests: [["exchanges", "exchanges"], ["errors", "errors"]],
  tokens: [["prompt_tokens", "tokens in"], ["completion_tokens", "tokens out"]],
  cost: [["cost_usd", "cost"]],
  latency: [["p50_latency_ms", "latency p50"], ["p95_latency_ms", "latency p95"], ["p50_ttft_ms", "ttft p50"]],
  speed: [["avg_tokens_per_s", "tokens/s"]],
};

function draw(element) {
  const series = CHARTS[element.dataset.chart];
  const options = {
    width: element.clientWidth || 480,
    height: 180,
    series: [{}, ...series.map(([, label], index) => ({ label, stroke: COLORS[index], width: 1.5, spanGaps: false }))],
    axes: [{}, { size: 60 }],
    legend: { show: true },
  };
  const columns = [data.time, ...series.map(([name]) => data[name])];
  return new uPlot(options, columns, element);
}

const plots = [...document.querySelectorAll("[data-chart]")].map((element) => [element, draw(element)]);

window.addEventListener("resize", () => {
  for (const [element, plot] of plots) {
    plot.setSize({ width: element.clientWidth, height: 180 });
  }
});
