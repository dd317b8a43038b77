/* The dashboard's page behaviour: live updates over a websocket (with backoff, jitter and
 * re-sync), auto-refresh, manual refresh, htmx action feedback and local times.
 * Every page has one live region, #live, that the server can render on its own
 * (header X-Dashboard-Fragment); any event of the page's groups refreshes it. */
(function () {
  "use strict";

  var live = document.getElementById("live");
  var statusEl = document.getElementById("live-status");
  var STORE_AUTO = "dashboard.autoRefresh";
  var STORE_INTERVAL = "dashboard.refreshInterval";

  // --- small helpers -------------------------------------------------------------------------

  function emit(name, detail) {
    var event = new CustomEvent(name, { detail: detail, cancelable: true });
    document.dispatchEvent(event);
    return event;
  }

  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box || !text) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (kind || "info");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () { item.classList.add("leaving"); }, 5000);
    setTimeout(function () { item.remove(); }, 5600);
    while (box.children.length > 4) box.firstChild.remove();
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localTimes(root) {
    var today = new Date().toDateString();
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var clock = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
      el.textContent = d.toDateString() === today ? clock
        : d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock;
      el.title = d.toString();
    });
  }

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  // --- refreshing the live region ------------------------------------------------------------

  var refreshTimer = null;
  var inFlight = false;
  var again = false;
  var deferred = false;

  function busyEditing() {
    // Never swap the region under someone who is filling in a form or has a menu open.
    var active = document.activeElement;
    if (live && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return true;
    return !!(live && live.querySelector("details[open]"));
  }

  function refresh() {
    if (!live) return;
    if (busyEditing()) { deferred = true; return; }
    if (inFlight) { again = true; return; }
    inFlight = true;
    deferred = false;
    emit("dashboard:refreshing", {});
    live.setAttribute("aria-busy", "true");
    fetch(live.dataset.fragmentUrl, {
      headers: { "X-Dashboard-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      if (response.redirected || response.status === 401 || response.status === 403) {
        window.location.reload();  // logged out: let the server send us to the login page
        return null;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      if (html === null) return;
      if (busyEditing()) { deferred = true; return; }
      live.innerHTML = html;
      if (window.htmx) window.htmx.process(live);
      localTimes(live);
      document.querySelectorAll("[data-updated] time").forEach(function (el) {
        el.setAttribute("datetime", new Date().toISOString());
      });
      localTimes(document.querySelector("[data-updated]"));
      emit("dashboard:refreshed", {});
    }).catch(function (error) {
      setStatus("error", "Refresh failed");
      console.warn("refresh failed", error);
    }).finally(function () {
      inFlight = false;
      live.setAttribute("aria-busy", "false");
      if (again) { again = false; scheduleRefresh(50); }
    });
  }

  function scheduleRefresh(delay) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, delay === undefined ? 100 : delay);
  }

  document.addEventListener("focusout", function () { if (deferred) scheduleRefresh(300); });
  document.addEventListener("toggle", function () { if (deferred) scheduleRefresh(300); }, true);

  // --- the live socket -----------------------------------------------------------------------

  var socket = null;
  var attempt = 0;
  var pingTimer = null;
  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_MAX_MS = 30000;

  function describe(event, payload) {
    if (event === "alert.transition") {
      var kind = payload.state === "active" ? "error" : (payload.state === "resolved" ? "ok" : "info");
      var names = { active: "firing", acknowledged: "acknowledged", resolved: "resolved",
        pending: "pending", inactive: "dropped" };
      var what = Object.keys(payload.labels || {}).filter(function (k) { return k !== "severity"; }).map(function (k) { return k + "=" + payload.labels[k]; }).join(", ");
      return ["Alert #" + payload.id + " " + (names[payload.state] || payload.state) +
        " (" + payload.severity + ")" + (what ? ": " + what : ""), kind];
    }
    if (event === "health.state_changed") {
      var changes = payload.changes || [];
      if (changes.length === 1) {
        var c = changes[0];
        return [c.name + ": " + c.previous_status + " → " + c.status, c.status === "critical" ? "error" : "info"];
      }
      return [changes.length + " checks changed state", "info"];
    }
    if (event === "notification.failed") return ["Notifications to " + payload.channel + " are failing", "error"];
    return [null, null];
  }

  // A transaction's events come as one "batch" message when there are several (an alert
  // storm): past this many, one toast sums them up instead of one toast each.
  var TOASTS_PER_MESSAGE = 3;

  function onMessage(message) {
    var data;
    try { data = JSON.parse(message.data); } catch (e) { return; }
    if (data.event === "hello" || data.event === "pong") return;
    var events = data.event === "batch" ? ((data.payload && data.payload.events) || []) : [data];
    var filterAlert = live && live.dataset.alertId;
    events = events.filter(function (item) {
      return !(item.event === "alert.transition" && filterAlert && String((item.payload || {}).id) !== filterAlert);
    });
    var shown = events.filter(function (item) { return item.event !== "metrics.changed"; }).map(function (item) {
      return describe(item.event, item.payload || {});
    }).filter(function (line) { return line[0]; });
    if (shown.length > TOASTS_PER_MESSAGE) {
      var firing = shown.filter(function (line) { return line[1] === "error"; }).length;
      toast(shown.length + " changes" + (firing ? ", " + firing + " firing or failing" : ""), firing ? "error" : "info");
    } else {
      shown.forEach(function (line) { toast(line[0], line[1]); });
    }
    var refresh = false;
    events.forEach(function (item) {
      if (!emit("dashboard:event", item).defaultPrevented) refresh = true;
    });
    if (refresh) scheduleRefresh();
  }

  function connect() {
    if (!live || !live.dataset.liveGroups || !("WebSocket" in window)) return;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + "/ws/live/?groups=" + encodeURIComponent(live.dataset.liveGroups);
    setStatus("connecting", attempt ? "Reconnecting…" : "Connecting…");
    socket = new WebSocket(url);
    socket.onopen = function () {
      var wasRetry = attempt > 0;
      attempt = 0;
      setStatus("live", "Live");
      // Re-sync: whatever happened while we were away (or between rendering the page and
      // subscribing) is in the region's next rendering.
      scheduleRefresh(wasRetry ? 0 : 50);
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: "ping" }));
      }, 25000);
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      clearInterval(pingTimer);
      socket = null;
      if (event.code === 4401) { setStatus("off", "Logged out"); window.location.reload(); return; }
      if (event.code === 4403) { setStatus("off", "Live updates refused"); return; }
      // Exponential backoff with full jitter, so a restarted server is not hit by every
      // open page in the same second.
      var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
      var delay = ceiling / 2 + Math.random() * ceiling / 2;
      attempt += 1;
      setStatus("retry", "Reconnecting in " + Math.round(delay / 1000) + " s");
      setTimeout(connect, delay);
    };
  }

  // --- auto-refresh, manual refresh, export ----------------------------------------------------

  var autoTimer = null;

  function applyAutoRefresh() {
    var box = document.querySelector("[data-auto-refresh]");
    var select = document.querySelector("[data-refresh-interval]");
    clearInterval(autoTimer);
    if (!box || !select) return;
    localStorage.setItem(STORE_AUTO, box.checked ? "1" : "0");
    localStorage.setItem(STORE_INTERVAL, select.value);
    if (box.checked) autoTimer = setInterval(function () { scheduleRefresh(0); }, Number(select.value) * 1000);
  }

  function setUpToolbar() {
    var box = document.querySelector("[data-auto-refresh]");
    var select = document.querySelector("[data-refresh-interval]");
    if (box && select) {
      box.checked = localStorage.getItem(STORE_AUTO) === "1";
      var stored = localStorage.getItem(STORE_INTERVAL);
      if (stored && select.querySelector('option[value="' + stored + '"]')) select.value = stored;
      box.addEventListener("change", applyAutoRefresh);
      select.addEventListener("change", applyAutoRefresh);
      applyAutoRefresh();
    }
    document.querySelectorAll("[data-action=refresh]").forEach(function (button) {
      button.addEventListener("click", function () { scheduleRefresh(0); });
    });
    document.addEventListener("keydown", function (event) {
      var typing = /^(INPUT|SELECT|TEXTAREA)$/.test((event.target || {}).tagName || "");
      if (event.key === "r" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) scheduleRefresh(0);
    });
    document.querySelectorAll("[data-autosubmit]").forEach(function (input) {
      input.addEventListener("change", function () {
        var custom = document.querySelector("[data-custom-range]");
        if (input.name === "range" && custom) {
          custom.hidden = input.value !== "custom";
          if (input.value === "custom") { custom.querySelector("input").focus(); return; }
        }
        input.form.submit();
      });
    });
  }

  // --- htmx actions -------------------------------------------------------------------------------

  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr) return;
    var text = (xhr.responseText || "").slice(0, 300);
    if (event.detail.successful) {
      toast(text || "Done.", "ok");
      scheduleRefresh(0);
    } else {
      toast(text || "The action failed (HTTP " + xhr.status + ").", "error");
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    setUpToolbar();
    connect();
  });

  window.dashboard = { refresh: function () { scheduleRefresh(0); }, toast: toast };
})();
