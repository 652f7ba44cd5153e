// Follows a connect session while the user works in Telegram: polls the status once a
// second and updates the status line, the instructions of the current phase and the time
// left in place, until the session reaches a final state.
"use strict";
(function () {
  const status = document.getElementById("connect-status");
  if (!status) return;
  const FINAL = ["connected", "expired", "cancelled"];
  const links = document.getElementById("connect-links");
  const again = document.getElementById("connect-again");
  const group = document.getElementById("connect-group");
  const leftLine = document.getElementById("time-left-line");
  const left = document.getElementById("time-left");

  function show(state, text, timeLeft) {
    status.dataset.state = state;
    status.textContent = text;
    if (links) links.hidden = state !== "waiting_private";
    if (group) group.hidden = state !== "waiting_group";
    if (again) again.hidden = !(state === "expired" || state === "cancelled");
    if (leftLine) leftLine.hidden = FINAL.includes(state);
    if (left && timeLeft) left.textContent = timeLeft;
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
        show(body.state, body.text, body.time_left);
      }
    } catch (err) {
      // The server may be restarting; keep trying.
    }
    if (!FINAL.includes(status.dataset.state)) setTimeout(poll, 1000);
  }

  if (!FINAL.includes(status.dataset.state)) setTimeout(poll, 1000);
})();
