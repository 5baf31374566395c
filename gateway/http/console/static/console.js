// Charts for the console: each <figure class="chart"> is drawn with uPlot, either from the
// live series (data-names, refreshed every data-refresh seconds) or from the JSON in its
// data-chart attribute (drawn once; htmx swaps in a new figure when it changes). Without
// JavaScript the pages still show every number in their tables.
(function () {
  "use strict";
  const palette = ["#2f5bd3", "#2f855a", "#b7791f", "#6b46c1"];
  // What is bad is red wherever it is drawn.
  const bad = new Set(["error_rate", "latency_p99_ms", "ttft_p99_ms", "pool_shed_ps", "errors"]);
  const labels = {
    rps: "req/s", error_rate: "errors", fallback_share: "fallback", latency_p50_ms: "p50",
    latency_p99_ms: "p99", ttft_p50_ms: "p50", ttft_p99_ms: "p99", spend_usd_per_h: "$/h",
    pool_admitted_ps: "admitted/s", pool_shed_ps: "shed/s", pool_queue: "waiting",
  };

  // x: "time" (epoch seconds), "days" (labels), or "seconds" (since a drill started).
  function options(fig, names, x) {
    const width = Math.max(280, fig.clientWidth - 16);
    const days = x === "days";
    return {
      width: width, height: 180,
      scales: {
        x: days ? { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] } : { time: x === "time" },
      },
      axes: days
        ? [{ splits: () => fig._days.map((_, i) => i), values: (u, ticks) => ticks.map((t) => fig._days[t] || "") }, {}]
        : [{}, {}],
      series: [{}].concat(names.map((name, i) => ({
        label: labels[name] || name, width: 1.5, spanGaps: true,
        stroke: bad.has(name) ? "#c8322d" : palette[i % palette.length],
        paths: days && typeof uPlot.paths.bars === "function" ? uPlot.paths.bars({ size: [0.6, 60] }) : undefined,
        fill: days ? "rgba(47, 91, 211, 0.35)" : undefined,
      }))),
    };
  }

  function draw(fig, names, data, x) {
    if (typeof uPlot === "undefined") { return; }
    if (x === "days") { fig._days = data[0]; data = [data[0].map((_, i) => i)].concat(data.slice(1)); }
    if (fig._plot) { fig._plot.setData(data); return; }
    fig._plot = new uPlot(options(fig, names, x), data, fig);
  }

  function live(fig) {
    const names = fig.dataset.names.split(",");
    const url = "/ui/series?names=" + encodeURIComponent(fig.dataset.names);
    const load = () => fetch(url, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((body) => { if (body) { draw(fig, body.names, body.data, "time"); } })
      .catch(() => {});
    load();
    fig._timer = setInterval(load, 1000 * (parseFloat(fig.dataset.refresh) || 5));
  }

  function fixed(fig) {
    const body = JSON.parse(fig.dataset.chart);
    draw(fig, body.names, body.data, body.x || "time");
  }

  function init(root) {
    root.querySelectorAll("figure.chart").forEach((fig) => {
      if (fig._drawn) { return; }
      fig._drawn = true;
      if (fig.dataset.names) { live(fig); } else if (fig.dataset.chart) { fixed(fig); }
    });
  }

  // A new key's secret, shown once: copied to the clipboard from its element, by id.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    const text = document.getElementById(button.dataset.copy).textContent;
    navigator.clipboard.writeText(text).then(() => { button.textContent = "Copied"; }, () => {});
  });

  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:afterSwap", (event) => init(event.detail.target));
})();
