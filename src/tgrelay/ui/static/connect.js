// Follows a connect session while the user works in Telegram: polls the status once a
// second and updates the status line in place, until the session reaches a final state.
"use strict";
(function () {
  const status = document.getElementById("connect-status");
  if (!status) return;
  const FINAL = ["connected", "expired", "cancelled"];
  const links = document.getElementById("connect-links");
  const again = document.getElementById("connect-again");

  function show(state, text) {
    status.dataset.state = state;
    status.textContent = text;
    if (links) links.hidden = state !== "waiting_private";
    if (again) again.hidden = !(state === "expired" || state === "cancelled");
  }

  async function poll() {
    try {
      const response = await fetch(status.dataset.statusUrl, {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (response.redirected) {  // signed out meanwhile
        window.location.assign(response.url);
        return;
      }
      if (response.status === 404) {  // the session is gone: nothing more to follow
        return;
      }
      if (response.ok) {
        const body = await response.json();
        show(body.state, body.text);
      }
    } catch (err) {
      // The server may be restarting; keep trying.
    }
    if (!FINAL.includes(status.dataset.state)) setTimeout(poll, 1000);
  }

  if (!FINAL.includes(status.dataset.state)) setTimeout(poll, 1000);
})();
