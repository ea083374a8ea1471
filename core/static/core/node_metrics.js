// A node's metrics history as a chart (the node's admin page), from the samples the page carries.
(function () {
  "use strict";
  var canvas = document.getElementById("node-metrics-chart");
  if (!canvas) { return; }
  var samples = JSON.parse(document.getElementById("node-metrics-data").textContent);
  var label = function (s) { return s.t.slice(11, 16); };
  window.nodeMetricsChart = new Chart(canvas, {
    type: "line",
    data: {
      labels: samples.map(label),
      datasets: [
        { label: "GPU utilization (%)", data: samples.map(function (s) { return s.gpu_utilization; }),
          borderColor: "#417690", yAxisID: "percent", spanGaps: true },
        { label: "GPU temperature (°C)", data: samples.map(function (s) { return s.gpu_temperature_c; }),
          borderColor: "#ba2121", yAxisID: "percent", spanGaps: true },
        { label: "active requests", data: samples.map(function (s) { return s.active_requests; }),
          borderColor: "#d9822b", yAxisID: "requests", stepped: true },
      ],
    },
    options: {
      animation: false, maintainAspectRatio: false,
      plugins: { title: { display: true, text: "GPU and load (UTC)" } },
      scales: { percent: { beginAtZero: true, position: "left" },
                requests: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } },
    },
  });
})();
