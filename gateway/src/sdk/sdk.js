/*! referral-mesh sdk.js v1: keeps the referral click id first-party. */
(function (w, d) {
  "use strict";
  // PARAM is filled in by the gateway (CLICK_PARAM). The cookie lives on this site's own
  // domain for 90 days, like the gateway's; attribution still counts 30 days only.
  var PARAM = "__RM_PARAM__", COOKIE = "rm_click", MAX_AGE = 7776000;
  var ID = /^[A-Za-z0-9._-]{1,160}$/, DOMAIN = /^\.?[A-Za-z0-9.-]{1,253}$/;
  var s = d.currentScript, domain = s && s.getAttribute("data-cookie-domain");

  function read() {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === COOKIE) {
        var v = parts[i].slice(eq + 1);
        return ID.test(v) ? v : null;
      }
    }
    return null;
  }

  function keep(id) {
    d.cookie = COOKIE + "=" + id + "; Max-Age=" + MAX_AGE + "; Path=/; SameSite=Lax" +
      (domain && DOMAIN.test(domain) ? "; Domain=" + domain : "") +
      (w.location.protocol === "https:" ? "; Secure" : "");
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
    /** The visitor's click id, to send as `clickId` with the signup; null if none. */
    clickId: read
  };
})(window, document);
