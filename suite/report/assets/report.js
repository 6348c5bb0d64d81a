// Sorting and filtering of the report's tables; no network, no dependencies.
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var v = cell.getAttribute("data-v");
    v = String(v === null ? cell.textContent : v).trim();
    var n = v === "" ? NaN : Number(v);  // Number() takes "1e-05" whole; parseFloat would take "12 MB" too
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === y) return 0;
      if (x === "") return 1;
      if (y === "") return -1;
      var r = typeof x === typeof y ? (x < y ? -1 : 1) : (typeof x === "number" ? -1 : 1);
      return ascending ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function applyFilter(table) {
    var box = document.querySelector('input[data-filter="' + table.id + '"]');
    var pick = document.querySelector('select[data-filter="' + table.id + '"]');
    var text = box ? box.value.toLowerCase() : "";
    var status = pick ? pick.value : "";
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var ok = (!text || row.textContent.toLowerCase().indexOf(text) !== -1) &&
               (!status || row.getAttribute("data-status") === status);
      row.classList.toggle("hidden", !ok);
      if (ok) shown++;
    });
    var counter = document.querySelector('[data-count="' + table.id + '"]');
    if (counter) counter.textContent = shown + " shown";
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () { sortBy(table, index, th); });
    });
    document.querySelectorAll('[data-filter="' + table.id + '"]').forEach(function (el) {
      el.addEventListener("input", function () { applyFilter(table); });
    });
    applyFilter(table);
  });
})();
