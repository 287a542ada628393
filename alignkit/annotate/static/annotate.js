// Keyboard shortcuts for the judging form: every key clicks the button a mouse would click, so the
// page works the same without JavaScript. Keys are ignored while typing in a field.
(function () {
  var form = document.getElementById("judge-form");
  var undo = document.getElementById("undo");
  var sent = false;
  function click(button) {
    if (!button || button.disabled || sent) { return; }
    sent = true;
    button.click();
  }
  document.addEventListener("submit", function () { sent = true; });
  var order = [];
  function showRanks() {
    var selects = form.querySelectorAll("select.rank");
    selects.forEach(function (s, pos) {
      var r = order.indexOf(pos);
      s.value = r < 0 ? "" : String(r + 1);
      document.getElementById("answer-" + (pos + 1)).classList.toggle("ranked", r >= 0);
    });
  }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "input" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "u" && undo) { e.preventDefault(); click(undo); return; }
    if (!form) { return; }
    if (form.dataset.view === "ranking") {
      var n = parseInt(form.dataset.n, 10);
      var d = parseInt(e.key, 10);
      if (d >= 1 && d <= n) {
        if (order.indexOf(d - 1) < 0) { order.push(d - 1); showRanks(); }
        e.preventDefault();
        return;
      }
      if (e.key === "Backspace") { order.pop(); showRanks(); e.preventDefault(); return; }
    }
    var button = form.querySelector('button[data-key="' + e.key + '"]');
    if (button) { e.preventDefault(); click(button); }
  });
})();
