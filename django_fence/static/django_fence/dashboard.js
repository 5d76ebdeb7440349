/* The fence dashboard's auto-refresh: fetch the numbers as JSON, swap in the panels that the server rendered.
 *
 * Polling is gentle (PITFALLS 25): every data-interval seconds while the numbers change, twice as long after
 * each refresh that changed nothing (up to data-max-factor times the interval), and not at all while the tab
 * is hidden; a tab that becomes visible again refreshes at once and goes back to the base interval.
 */
(function () {
  "use strict";

  function nextDelay(current, base, maxFactor, changed) {
    return changed ? base : Math.min(current * 2, base * maxFactor);
  }

  const api = { nextDelay: nextDelay, state: null };
  window.djangoFenceDashboard = api;

  function start(root) {
    const interval = parseFloat(root.dataset.interval);  // checked by django_fence.E007; guarded here too
    const base = (Number.isFinite(interval) && interval > 0 ? Math.max(0.05, interval) : 5) * 1000;
    const maxFactor = Math.max(1, parseInt(root.dataset.maxFactor, 10) || 1);
    const state = { delay: base, polls: 0, changes: 0, digest: root.dataset.digest, timer: null, inFlight: false };
    api.state = state;
    const updated = root.querySelector(".fence-updated");

    function schedule() {
      clearTimeout(state.timer);
      state.timer = document.hidden ? null : setTimeout(refresh, state.delay);
    }

    function apply(data) {
      const changed = data.digest !== state.digest;
      if (changed) {
        state.digest = data.digest;
        state.changes += 1;
        Object.entries(data.panels).forEach(function ([name, html]) {
          const panel = document.getElementById("fence-panel-" + name);
          if (panel) { panel.innerHTML = html; }
        });
        tick();
      }
      return changed;
    }

    function refresh() {
      state.timer = null;
      if (state.inFlight) { return; }  // the visible-again refresh while a poll is out: that poll reschedules
      state.inFlight = true;
      fetch(root.dataset.url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          state.polls += 1;
          state.delay = nextDelay(state.delay, base, maxFactor, apply(data));
          if (updated) { updated.textContent = "Updated " + new Date().toLocaleTimeString() + "."; }
        })
        .catch(function (error) {
          state.delay = nextDelay(state.delay, base, maxFactor, false);
          if (updated) { updated.textContent = "Refresh failed (" + error.message + "); retrying."; }
        })
        .finally(function () {
          state.inFlight = false;
          schedule();
        });
    }

    // The queue's lag grows with the clock alone, so the page counts it up itself rather than polling for it
    // (the digest leaves it out). data-now is the server's time at rendering: the offset cancels clock skew.
    function tick() {
      const now = Date.now() / 1000;
      root.querySelectorAll(".fence-since").forEach(function (el) {
        if (!el.dataset.skew) { el.dataset.skew = String(now - parseFloat(el.dataset.now)); }
        const lag = now - parseFloat(el.dataset.skew) - parseFloat(el.dataset.since);
        el.textContent = String(Math.max(0, Math.round(lag)));
      });
    }
    tick();  // the offset is taken as the panel arrives (here, and after each swap in apply())
    setInterval(tick, 1000);

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        clearTimeout(state.timer);
        state.timer = null;
      } else {
        state.delay = base;
        refresh();
      }
    });
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.querySelector(".fence-dashboard");
    if (root) { start(root); }
  });
})();
