// shopfloor dashboard: keyboard shortcuts of the review queue and the edit preview.
// No framework and no network calls of its own: every action is a plain form post.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    if (!t || !t.tagName) return false;
    var tag = t.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || t.isContentEditable;
  }

  function openPanel(id, focus) {
    var panel = document.getElementById(id);
    if (!panel) return;
    panel.open = true;
    var field = document.getElementById(focus);
    if (field) field.focus();
  }

  // j / k: the next / previous item of the queue beside the one open.
  function step(delta) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#queue a"));
    if (!links.length) return;
    var current = links.findIndex(function (a) { return a.getAttribute("aria-current") === "true"; });
    var next = current < 0 ? 0 : current + delta;
    if (next >= 0 && next < links.length) window.location.href = links[next].href;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var dialog = document.getElementById("shortcuts");
    if (event.key === "Escape" && dialog && dialog.open) { dialog.close(); return; }
    if (typing(event)) return;
    switch (event.key) {
      case "a": {
        var approve = document.getElementById("approve-form");
        if (approve) { event.preventDefault(); approve.requestSubmit(); }
        break;
      }
      case "n":
      case "c": {
        var taken = document.getElementById(event.key === "n" ? "next-form" : "claim-form");
        if (taken) { event.preventDefault(); taken.requestSubmit(); }
        break;
      }
      case "e": event.preventDefault(); openPanel("edit-panel", "edit-output"); break;
      case "r": event.preventDefault(); openPanel("reject-panel", "reject-reason"); break;
      case "j": step(1); break;
      case "k": step(-1); break;
      case "?":
        if (dialog && typeof dialog.showModal === "function") { event.preventDefault(); dialog.showModal(); }
        break;
    }
  });

  // The edit form: JSON checked as it is typed, and a line diff against the original.
  function lineDiff(before, after) {
    var a = before.split("\n"), b = after.split("\n");
    var n = a.length, m = b.length, i, j;
    var lcs = [];
    for (i = 0; i <= n; i++) { lcs.push(new Array(m + 1).fill(0)); }
    for (i = n - 1; i >= 0; i--) for (j = m - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    var out = []; i = 0; j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
      else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(["-", a[i]]); i++; }
      else { out.push(["+", b[j]]); j++; }
    }
    return out;
  }

  var form = document.getElementById("edit-form");
  var field = document.getElementById("edit-output");
  if (form && field && field.tagName.toLowerCase() === "textarea") {
    var diff = document.getElementById("edit-diff");
    var error = document.getElementById("json-error");
    var original = field.getAttribute("data-original") || "";
    var update = function () {
      var text = field.value;
      if (form.getAttribute("data-editor") === "json" && error) {
        try { JSON.parse(text); error.hidden = true; field.removeAttribute("aria-invalid"); }
        catch (e) { error.textContent = "Not valid JSON yet: " + e.message; error.hidden = false; field.setAttribute("aria-invalid", "true"); }
      }
      if (!diff) return;
      diff.textContent = "";
      if (text === original) { diff.hidden = true; return; }
      lineDiff(original, text).forEach(function (line) {
        var span = document.createElement("span");
        span.className = line[0] === "+" ? "dadd" : (line[0] === "-" ? "ddel" : "dsame");
        span.textContent = line[0] + " " + line[1];
        diff.appendChild(span);
      });
      diff.hidden = false;
    };
    field.addEventListener("input", update);
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-editor") !== "json") return;
      try { JSON.parse(field.value); } catch (e) { event.preventDefault(); update(); field.focus(); }
    });
  }
})();
