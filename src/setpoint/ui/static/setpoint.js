// Draws every [data-figure] element with Plotly, and shows a heatmap cell's numbers on click.
"use strict";

function drawAll() {
  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var figure = JSON.parse(el.dataset.figure);
    Plotly.newPlot(el, figure.data, figure.layout, { displaylogo: false, responsive: true }).then(function () {
      el.dataset.drawn = "true";
    });
    if (el.dataset.details) {
      var details = JSON.parse(document.getElementById(el.dataset.details).textContent);
      el.on("plotly_click", function (event) { showCell(details, event.points[0]); });
    }
  });
}

function showCell(details, point) {
  var cell = (details[point.y] || [])[point.pointIndex[1]];
  var box = document.getElementById("cell");
  var facts = document.getElementById("cell-facts");
  document.getElementById("cell-title").textContent = point.y + " in the window from " + point.x;
  facts.replaceChildren();
  var rows = cell ? [
    ["test", cell.test + " " + Number(cell.statistic).toFixed(4) + " (threshold " + cell.threshold + ")"],
    ["drifted", cell.drifted ? "yes" : "no"],
    ["PSI", Number(cell.psi).toFixed(4)],
    ["mean, reference / current", fmt(cell.mean_reference) + " / " + fmt(cell.mean_current)],
    ["std, reference / current", fmt(cell.std_reference) + " / " + fmt(cell.std_current)],
    ["missing, reference / current", fmt(cell.missing_reference) + " / " + fmt(cell.missing_current)],
    ["new values", fmt(cell.new_share) + (cell.new_values && cell.new_values.length ? " (" + cell.new_values.join(", ") + ")" : "")],
    ["rows, reference / current", cell.n_reference + " / " + cell.n_current],
  ] : [["", "not in this window"]];
  rows.forEach(function (row) {
    var dt = document.createElement("dt"); dt.textContent = row[0];
    var dd = document.createElement("dd"); dd.textContent = row[1];
    facts.append(dt, dd);
  });
  box.hidden = false;
  drawDistributions(cell, point.y);
}

function drawDistributions(cell, name) {
  var target = document.getElementById("cell-chart");
  if (!cell || !cell.bins || !cell.bins.length) {
    target.hidden = true;
    return;
  }
  target.hidden = false;
  var bar = function (label, shares, color) {
    return { type: "bar", name: label, x: cell.bins, y: shares, marker: { color: color } };
  };
  Plotly.newPlot(target, [
    bar("reference", cell.reference_shares, "#7f7f7f"),
    bar("this window", cell.current_shares, "#1f5fa8"),
  ], {
    title: { text: name + ": share of values per bin", x: 0 },
    barmode: "group", height: 300, margin: { l: 50, r: 20, t: 40, b: 90 },
    font: { family: "system-ui, sans-serif", size: 13, color: "#1b1f24" },
    xaxis: { type: "category" }, yaxis: { tickformat: ".0%" },
  }, { displaylogo: false, responsive: true }).then(function () { target.dataset.drawn = "cell"; });
}

function fmt(value) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(4);
}

document.addEventListener("DOMContentLoaded", drawAll);
