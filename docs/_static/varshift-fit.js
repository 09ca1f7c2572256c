// Fit the pages to the screen once MathJax has typeset them (docs/_ext/check_site.py measures
// every page at 390 and 1280 px):
// - a displayed formula wider than its column is set smaller, down to 70 %, and scrolls in its
//   own box if it is still too wide (on a phone);
// - an inline formula wider than its line scrolls in its own box instead of being cut;
// - every cell of a table about verdicts (a column header that speaks of the verdict) is
//   labelled with its column's name, so that on a phone the table's rows can be shown as cards
//   (varshift.css, class vs-stack).
// window.varshiftFitted resolves when this is done (the browser check waits for it).
(function () {
  "use strict";
  var MIN_SCALE = 0.7;

  function fitDisplay(m) {
    m.style.fontSize = "";
    var inner = m.querySelector("mjx-math");
    if (!inner) { return; }
    var available = m.clientWidth;
    var width = inner.getBoundingClientRect().width;
    if (available > 0 && width > available + 1) {
      var scale = Math.max(MIN_SCALE, (available - 2) / width);
      m.style.fontSize = (100 * scale).toFixed(1) + "%";
    }
  }

  function fitInline(m) {
    var span = m.parentElement;
    if (!span || !span.classList.contains("math")) { return; }
    span.classList.remove("vs-math-scroll");
    var inner = m.querySelector("mjx-math") || m;
    if (inner.getBoundingClientRect().width > span.clientWidth + 1) {
      span.classList.add("vs-math-scroll");
    }
  }

  function labelTables() {
    document.querySelectorAll("article table").forEach(function (table) {
      var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      if (!heads.some(function (h) { return /\bverdict/i.test(h); })) { return; }
      table.classList.add("vs-stack");
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        Array.prototype.forEach.call(tr.children, function (td, i) {
          if (heads[i]) { td.setAttribute("data-label", heads[i]); }
        });
      });
    });
  }

  function fit() {
    document.querySelectorAll("mjx-container").forEach(function (m) {
      if (m.getAttribute("display") === "true") { fitDisplay(m); } else { fitInline(m); }
    });
  }

  function typeset() {
    var mj = window.MathJax;
    var ready = mj && mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
    var fonts = document.fonts && document.fonts.ready ? document.fonts.ready : Promise.resolve();
    return ready.then(function () { return fonts; });
  }

  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(fit, 150);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", labelTables);
  } else {
    labelTables();
  }
  window.varshiftFitted = new Promise(function (resolve) {
    window.addEventListener("load", function () {
      typeset().then(fit).then(resolve, resolve);
    });
  });
})();
