// Live pages: an element with data-live="URL" re-fetches its server-rendered fragment
// every data-poll ms (at most every second) while the tab is visible. The fragment is
// escaped on the server; it replaces the element's content only when it changed.
(function () {
  "use strict";
  function follow(element) {
    var url = element.getAttribute("data-live");
    var every = Math.max(250, Math.min(1000, parseInt(element.getAttribute("data-poll"), 10) || 1000));
    var last = null;
    var busy = false;
    function tick() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
        .then(function (response) {
          var banner = document.getElementById("live-banner");
          if (!response.ok) {
            if (!banner) {
              banner = document.createElement("div");
              banner.id = "live-banner";
              banner.className = "banner";
              banner.setAttribute("role", "alert");
              document.body.insertBefore(banner, document.querySelector("main"));
            }
            banner.textContent = response.status === 503
              ? "The read model is unreachable; showing the last data seen. Retrying."
              : "Live updates stopped: the server answered " + response.status + ".";
            return null;
          }
          if (banner) { banner.remove(); }
          return response.text();
        })
        .then(function (html) {
          if (html !== null && html !== last) {
            last = html;
            element.innerHTML = html;
          }
        })
        .catch(function () { /* offline: try again at the next tick */ })
        .then(function () { busy = false; });
    }
    setInterval(tick, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) { follow(live[i]); }
  });
})();
