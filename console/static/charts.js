// The overview's charts: each <figure data-chart> asks /console/series.json for its last
// hour and draws it with uPlot; the text under it says the latest value for screen readers.
(function () {
  "use strict";
  var units = {
    s: function (v) { return v >= 1 ? v.toFixed(2) + " s" : (v * 1000).toFixed(1) + " ms"; },
    ratio: function (v) { return (v * 100).toFixed(1) + " %"; },
    "/s": function (v) { return v.toFixed(2) + "/s"; },
    B: function (v) { return (v / 1048576).toFixed(1) + " MiB"; },
    "": function (v) { return v.toFixed(2); }
  };
  var colours = ["#0a58ca", "#a40e26", "#116329", "#7a4d00", "#6f42c1", "#1b1f24"];

  function draw(figure, data) {
    var format = units[figure.dataset.unit] || units[""];
    var text = figure.querySelector(".chart-text");
    if (!data.series.length) { text.textContent = "No data in the last hour."; return; }
    var latest = data.series.map(function (s) {
      var values = s.values.filter(function (v) { return v !== null; });
      return s.name + ": " + (values.length ? format(values[values.length - 1]) : "no data");
    });
    text.textContent = "Latest: " + latest.join("; ");
    var plot = figure.querySelector(".plot");
    var options = {
      width: Math.max(plot.clientWidth, 300), height: 180,
      series: [{}].concat(data.series.map(function (s, i) {
        return { label: s.name, stroke: colours[i % colours.length], width: 2,
                 value: function (u, v) { return v === null ? "–" : format(v); } };
      })),
      axes: [{}, { values: function (u, vals) { return vals.map(format); }, size: 80 }]
    };
    new uPlot(options, [data.times].concat(data.series.map(function (s) { return s.values; })), plot);
  }

  document.querySelectorAll("figure[data-chart]").forEach(function (figure) {
    fetch(figure.dataset.src, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) { draw(figure, data); })
      .catch(function (e) {
        figure.querySelector(".chart-text").textContent = "Could not load: " + e.message;
      });
  });
})();
