// Stella UI: progressive enhancement only; every page works without it.
(function () {
  "use strict";
  // Times: the server writes UTC (RFC 3339); show them in the reader's zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.textContent = when.toLocaleString(undefined, {
          year: "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
        });
        el.title = el.getAttribute("datetime");
      }
    });
  }
  // Buttons that change running systems ask first (data-confirm="…").
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  // Live views: an element with data-stream="/path" is updated from server-sent events
  // carrying {"html": {"element-id": "<new inner html>"}, "done": bool}.
  function live(el) {
    if (!window.EventSource) { return; }
    var source = new EventSource(el.getAttribute("data-stream"));
    source.onmessage = function (message) {
      var data = JSON.parse(message.data);
      Object.keys(data.html || {}).forEach(function (id) {
        var target = document.getElementById(id);
        if (target) { target.innerHTML = data.html[id]; localTimes(target); }
      });
      Object.keys(data.classes || {}).forEach(function (id) {
        var target = document.getElementById(id);
        if (target) { target.setAttribute("class", data.classes[id]); }
      });
      if (data.done) { source.close(); }
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-stream]").forEach(live);
  });
})();
