// The console's charts, drawn from the figures the page carries (#console-data); Chart.js is served by us.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("console-data").textContent);
  var colors = { operator: "#417690", platform: "#79aec8", treasury: "#d9822b" };
  var money = function (v) { return "$" + Number(v).toFixed(2); };
  window.consoleCharts = {};
  window.consoleCharts.revenue = new Chart(document.getElementById("chart-revenue"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: ["operator", "platform", "treasury"].map(function (share) {
        return { label: share, data: data.revenue[share], backgroundColor: colors[share], stack: "revenue" };
      }),
    },
    options: {
      animation: false, maintainAspectRatio: false,
      plugins: { title: { display: true, text: "Revenue per day by share (USD)" },
                 tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + money(c.parsed.y); } } } },
      scales: { x: { stacked: true }, y: { stacked: true, ticks: { callback: money } } },
    },
  });
  window.consoleCharts.requests = new Chart(document.getElementById("chart-requests"), {
    type: "line",
    data: {
      labels: data.labels,
      datasets: [
        { label: "requests", data: data.requests, borderColor: "#417690", yAxisID: "y" },
        { label: "tokens", data: data.tokens, borderColor: "#d9822b", yAxisID: "tokens" },
      ],
    },
    options: {
      animation: false, maintainAspectRatio: false,
      plugins: { title: { display: true, text: "Requests and tokens per day" } },
      scales: { y: { beginAtZero: true, position: "left" },
                tokens: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } },
    },
  });
})();
