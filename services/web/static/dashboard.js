// Refreshes the live part of a page (#live) every data-refresh seconds: fetches the same URL and
// swaps that element's content, so the page stays where the reader scrolled. No build step.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseFloat(live.getAttribute("data-refresh") || "0");
  if (!(every > 0)) { return; }
  var busy = false;
  function status(text) {
    var s = document.getElementById("refresh-status");
    if (s) { s.textContent = text; }
  }
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/login") >= 0) {
          window.location.reload();
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (text === null) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) { live.innerHTML = fresh.innerHTML; }
      })
      .catch(function () { status("The dashboard did not answer; retrying."); })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every * 1000);
})();
