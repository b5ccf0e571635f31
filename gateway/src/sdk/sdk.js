/*! referral-mesh sdk.js v1: keeps the referral click id first-party. */
(function (w, d) {
  "use strict";
  // PARAM is filled in by the gateway (CLICK_PARAM). The cookies live on this site's own
  // domain for 90 days, like the gateway's; attribution still counts 30 days only.
  // rm_click holds the newest click id; rm_clicks the visitor's last 10, oldest first.
  var PARAM = "__RM_PARAM__", COOKIE = "rm_click", LIST = "rm_clicks", MAX_AGE = 7776000, KEEP = 10;
  var ID = /^[A-Za-z0-9._-]{1,160}$/, DOMAIN = /^\.?[A-Za-z0-9.-]{1,253}$/;
  var s = d.currentScript, domain = s && s.getAttribute("data-cookie-domain");

  function read(name) {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return parts[i].slice(eq + 1);
    }
    return "";
  }

  function clickId() {
    var v = read(COOKIE);
    return ID.test(v) ? v : null;
  }

  function clickIds() {
    var ids = [], all = read(LIST).split("~"), last = clickId();
    for (var i = 0; i < all.length; i++) if (ID.test(all[i])) ids.push(all[i]);
    if (last && ids[ids.length - 1] !== last) ids.push(last);
    return ids.slice(-KEEP);
  }

  function set(name, value) {
    d.cookie = name + "=" + value + "; Max-Age=" + MAX_AGE + "; Path=/; SameSite=Lax" +
      (domain && DOMAIN.test(domain) ? "; Domain=" + domain : "") +
      (w.location.protocol === "https:" ? "; Secure" : "");
  }

  function keep(id) {
    var ids = clickIds();
    if (ids[ids.length - 1] !== id) ids.push(id);
    set(LIST, ids.slice(-KEEP).join("~"));
    set(COOKIE, id);
  }

  try {
    var url = new URL(w.location.href), ids = url.searchParams.getAll(PARAM);
    if (ids.length) {
      // The newest click wins: the redirect appends its parameter last.
      if (ID.test(ids[ids.length - 1])) keep(ids[ids.length - 1]);
      url.searchParams["delete"](PARAM);
      if (w.history && w.history.replaceState) {
        w.history.replaceState(w.history.state, "", url.pathname + url.search + url.hash);
      }
    }
  } catch (e) { /* an old browser: the gateway's own cookie still works */ }

  w.referralMesh = {
    version: "1",
    /** The visitor's newest click id, to send as `clickId` with the signup; null if none. */
    clickId: clickId,
    /** The visitor's click ids, oldest first (at most 10), to send as `clickIds`. */
    clickIds: clickIds
  };
})(window, document);
