// Draws the overview's charts with Chart.js from the JSON block the page
// carries (id "series"): no inline script, so the page's CSP can forbid it.
"use strict";
(function () {
  var block = document.getElementById("series");
  if (!block || typeof Chart === "undefined") {
    return;
  }
  var series = JSON.parse(block.textContent);
  var labels = series.buckets.map(function (b) { return b.label; });
  var pick = function (k) { return series.buckets.map(function (b) { return b[k]; }); };
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = "system-ui, sans-serif";
  new Chart(document.getElementById("chart-storms"), {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "storms", data: pick("storms"), backgroundColor: "#c0392b" },
        { label: "near misses", data: pick("near_misses"), backgroundColor: "#e6a23c" }
      ]
    },
    options: {
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
    }
  });
  new Chart(document.getElementById("chart-refused"), {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "replies refused", data: pick("refused"), backgroundColor: "#2c6fbb", yAxisID: "y" },
        { label: "deliveries saved", data: pick("saved"), type: "line", borderColor: "#27ae60",
          backgroundColor: "#27ae60", yAxisID: "saved", pointRadius: 2 }
      ]
    },
    options: {
      scales: {
        y: { beginAtZero: true, position: "left", ticks: { precision: 0 }, title: { display: true, text: "replies" } },
        saved: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "deliveries" } }
      }
    }
  });
})();
