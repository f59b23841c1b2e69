(function () {
  "use strict";
  var docs = Array.prototype.slice.call(document.querySelectorAll("article.doc"));
  var texts = docs.map(function (doc) { return doc.textContent.toLowerCase(); });
  var outcome = document.getElementById("filter-outcome");
  var search = document.getElementById("filter-search");
  var shown = document.getElementById("shown-count");
  function matchesOutcome(doc, wanted) {
    if (!wanted) return true;
    if (wanted === "dropped") return doc.dataset.outcome.indexOf("dropped-") === 0;
    return doc.dataset.outcome === wanted;
  }
  function apply() {
    var wanted = outcome.value;
    var query = search.value.trim().toLowerCase();
    var visible = 0;
    docs.forEach(function (doc, i) {
      var show = matchesOutcome(doc, wanted) && (!query || texts[i].indexOf(query) !== -1);
      doc.hidden = !show;
      if (show) visible += 1;
    });
    shown.textContent = visible + " of " + docs.length + " sampled documents shown";
    shown.dataset.visible = String(visible);
  }
  outcome.addEventListener("change", apply);
  search.addEventListener("input", apply);
  apply();
}());
