/* Line charts of the dashboard on uPlot: data bucketed by the server to the chart's width,
 * one line per series, the thresholds of the rules that watch them as dashed lines, gaps
 * where samples are missing, time axes in local time, values with their unit on hover. */
(function () {
  "use strict";

  var PALETTE = ["#2563eb", "#16a34a", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#7c3aed",
    "#0d9488", "#c026d3", "#4f46e5", "#059669", "#be185d"];
  var THRESHOLD_COLOURS = { critical: "#dc2626", high: "#ea580c", medium: "#ca8a04", low: "#64748b" };

  function dark() { return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches; }

  function formatValue(value, unit) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    var abs = Math.abs(value);
    var text;
    if (unit === "B") {
      var units = ["B", "kB", "MB", "GB", "TB", "PB"];
      var i = 0;
      while (abs >= 1000 && i < units.length - 1) { abs /= 1000; value /= 1000; i++; }
      return (Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3)) + " " + units[i];
    }
    if (abs >= 1e6) text = value.toExponential(2);
    else if (Number.isInteger(value) || abs >= 100) text = value.toFixed(0);
    else text = String(Number(value.toPrecision(3)));
    return unit ? text + (unit === "%" || unit === "°C" ? "" : " ") + unit : text;
  }

  /* One x array for every series: the union of their times. A time a series has no bucket at
   * is `undefined` (uPlot joins over it); an explicit null from the server is a gap. */
  function align(series) {
    var times = new Set();
    series.forEach(function (s) { s.t.forEach(function (t) { times.add(t); }); });
    var xs = Array.from(times).sort(function (a, b) { return a - b; });
    var index = new Map(xs.map(function (t, i) { return [t, i]; }));
    var data = [xs];
    series.forEach(function (s) {
      var ys = new Array(xs.length);
      for (var i = 0; i < s.t.length; i++) ys[index.get(s.t[i])] = s.v[i];
      data.push(ys);
    });
    return data;
  }

  function thresholdPlugin(el) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx;
          var drawn = 0;
          var left = u.bbox.left, width = u.bbox.width;
          ctx.save();
          ctx.font = Math.round(11 * devicePixelRatio) + "px system-ui, sans-serif";
          (el._chart.thresholds || []).forEach(function (t) {
            var y = Math.round(u.valToPos(t.value, "y", true));
            if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
            var colour = THRESHOLD_COLOURS[t.severity] || THRESHOLD_COLOURS.low;
            ctx.strokeStyle = colour;
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(left, y);
            ctx.lineTo(left + width, y);
            ctx.stroke();
            ctx.setLineDash([]);
            ctx.fillStyle = colour;
            // Labelled at the left: the right edge is where "now" and the latest marks are.
            ctx.textAlign = "left";
            ctx.fillText(t.rule + " " + t.comparison + " " + formatValue(t.value, el._chart.unit),
              left + 6 * devicePixelRatio, y - 4 * devicePixelRatio);
            drawn++;
          });
          (el._chart.marks || []).forEach(function (m) {
            var x = Math.round(u.valToPos(m.t, "x", true));
            if (x < left || x > left + width) return;
            ctx.strokeStyle = dark() ? "#94a3b8" : "#475569";
            ctx.lineWidth = 1 * devicePixelRatio;
            ctx.setLineDash([2 * devicePixelRatio, 3 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.setLineDash([]);
            ctx.fillStyle = ctx.strokeStyle;
            ctx.textAlign = "left";
            ctx.fillText(m.label, x + 3 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
          });
          ctx.restore();
          el.dataset.thresholdsDrawn = String(drawn);
        },
      },
    };
  }

  function build(el, payload) {
    var started = performance.now();
    var unit = payload.unit || "";
    el._chart = { thresholds: payload.thresholds || [], unit: unit, ids: payload.series.map(function (s) { return s.id; }),
      marks: el.dataset.chartMarks ? JSON.parse(el.dataset.chartMarks) : [] };
    var axisColour = dark() ? "#cbd5e1" : "#334155";
    var gridColour = dark() ? "rgba(148,163,184,.15)" : "rgba(51,65,85,.1)";
    var thresholdValues = el._chart.thresholds.map(function (t) { return t.value; });
    var options = {
      width: Math.max(280, el.clientWidth),
      height: window.innerWidth < 640 ? 220 : 320,
      cursor: { focus: { prox: 24 } },
      focus: { alpha: 0.35 },
      legend: { live: true },
      scales: {
        x: { time: true, range: function () { return [payload.start, payload.end]; } },
        y: {
          range: function (u, min, max) {
            // The thresholds are always in view, so the line is drawn even while every
            // value is far from it.
            var lo = Math.min.apply(null, [min].concat(thresholdValues).filter(function (v) { return v !== null && !isNaN(v); }));
            var hi = Math.max.apply(null, [max].concat(thresholdValues).filter(function (v) { return v !== null && !isNaN(v); }));
            if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
            if (lo === hi) { lo -= 1; hi += 1; }
            var pad = (hi - lo) * 0.08;
            return [lo >= 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad];
          },
        },
      },
      axes: [
        { stroke: axisColour, grid: { stroke: gridColour }, ticks: { stroke: gridColour } },
        { stroke: axisColour, grid: { stroke: gridColour }, ticks: { stroke: gridColour }, size: 64,
          values: function (u, values) { return values.map(function (v) { return formatValue(v, unit); }); } },
      ],
      series: [{ label: "Time" }].concat(payload.series.map(function (s, i) {
        return {
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: false,
          points: { size: 4 },
          value: function (u, v) { return formatValue(v, unit); },
        };
      })),
      plugins: [thresholdPlugin(el)],
    };
    if (el._uplot) el._uplot.destroy();
    el.innerHTML = "";
    el._uplot = new uPlot(options, align(payload.series), el);
    var drawMs = performance.now() - started;
    var points = payload.series.reduce(function (n, s) { return n + s.v.filter(function (v) { return v !== null; }).length; }, 0);
    el.dataset.drawMs = drawMs.toFixed(1);
    el.dataset.points = String(points);
    el.dataset.series = String(payload.series.length);
    note(el, payload, points);
  }

  function note(el, payload, points) {
    var noteEl = el.parentElement.querySelector("[data-chart-note]");
    if (!noteEl) return;
    var parts = [];
    if (!payload.series.length) parts.push("No series match.");
    else if (!points) parts.push("No samples in this range.");
    if (payload.count > payload.shown) parts.push("Showing " + payload.shown + " of " + payload.count + " series: narrow the labels to see the others.");
    parts.push("One point per " + payload.step + " s bucket (average).");
    if (payload.thresholds.length) parts.push(payload.thresholds.length + " threshold(s) dashed.");
    noteEl.textContent = parts.join(" ");
  }

  function load(el) {
    if (el._loading) { el._again = true; return; }
    el._loading = true;
    var url = el.dataset.chartUrl + "&width=" + Math.max(200, Math.round(el.clientWidth || 1000));
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (payload) {
        var same = el._uplot && el._chart && JSON.stringify(el._chart.ids) === JSON.stringify(payload.series.map(function (s) { return s.id; }));
        if (same) {
          el._chart.thresholds = payload.thresholds || [];
          el._uplot.setData(align(payload.series));
          var points = payload.series.reduce(function (n, s) { return n + s.v.filter(function (v) { return v !== null; }).length; }, 0);
          el.dataset.points = String(points);
          note(el, payload, points);
        } else {
          build(el, payload);
        }
        el.dataset.loaded = String(Date.now());
      })
      .catch(function (error) {
        el.textContent = "The chart could not be loaded (" + error.message + ").";
      })
      .finally(function () {
        el._loading = false;
        if (el._again) { el._again = false; load(el); }
      });
  }

  function charts() { return Array.prototype.slice.call(document.querySelectorAll(".chart[data-chart-url]")); }

  document.addEventListener("dashboard:event", function (event) {
    var data = event.detail;
    if (data.event !== "metrics.changed") return;
    event.preventDefault();  // the chart reloads its data; the rest of the page is unchanged
    var names = (data.payload && data.payload.metrics) || [];
    charts().forEach(function (el) { if (names.indexOf(el.dataset.metric) !== -1) load(el); });
  });
  // Charts outside the live region reload their data on every refresh; those inside it are
  // replaced with the region and drawn anew once it is swapped in.
  document.addEventListener("dashboard:refreshing", function () {
    charts().forEach(function (el) { if (!el.closest("#live")) load(el); });
  });
  document.addEventListener("dashboard:refreshed", function () {
    charts().forEach(function (el) { if (!el._uplot && !el._loading) load(el); });
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts().forEach(function (el) {
        if (el._uplot) el._uplot.setSize({ width: Math.max(280, el.clientWidth), height: window.innerWidth < 640 ? 220 : 320 });
      });
    }, 150);
  });

  document.addEventListener("DOMContentLoaded", function () { charts().forEach(load); });
  window.dashboardCharts = { load: load, formatValue: formatValue };
})();
