// Live status of a connection's alerts: while any row is queued, polls the page's JSON
// route every second and redraws each row's badge, error and sent time in place.
"use strict";
(function () {
  const table = document.getElementById("notifications");
  if (!table) return;

  function queued() {
    return table.querySelector('.live-status [data-status="queued"]') !== null;
  }

  function redraw(row, item) {
    const status = row.querySelector(".live-status div");
    const badge = document.createElement("span");
    badge.className = "badge " + item.tone;
    badge.dataset.status = item.status;
    badge.textContent = item.words;
    status.replaceChildren(badge);
    if (item.error) {
      const error = document.createElement("span");
      error.className = "error-text";
      error.textContent = item.error;
      status.append(" ", error);
    }
    const sent = row.querySelector(".live-sent");
    if (item.sent) {
      const time = document.createElement("time");
      time.dateTime = item.sent_iso;
      time.title = item.sent_exact;
      time.textContent = item.sent;
      sent.replaceChildren(time);
    }
  }

  async function poll() {
    try {
      const response = await fetch(table.dataset.statusUrl, {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (response.redirected) {  // signed out meanwhile
        window.location.assign(response.url);
        return;
      }
      if (response.status === 404) return;  // the connection is gone
      if (response.ok) {
        const body = await response.json();
        for (const item of body.notifications) {
          const row = table.querySelector(`tr[data-notification-id="${item.id}"]`);
          if (row) redraw(row, item);
        }
      }
    } catch (err) {
      // The server may be restarting; keep trying.
    }
    if (queued()) setTimeout(poll, 1000);
  }

  if (queued()) setTimeout(poll, 1000);
})();
