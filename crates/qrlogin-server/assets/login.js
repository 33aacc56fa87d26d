// qrlogin demo: the web site's "Log in with your phone" page (served at /).
// Creates a login (cookie binding), shows its QR, watches it with Server-Sent
// Events (falling back to long-polling), redeems it once approved.
(function () {
  'use strict';

  var POLL_WAIT_S = 25;
  var SSE_MAX_ERRORS = 3;

  function $(id) { return document.getElementById(id); }

  var el = {
    loginView: $('login-view'),
    doneView: $('done-view'),
    qr: $('qr'),
    qrBox: $('qr-box'),
    qrOverlay: $('qr-overlay'),
    qrLink: $('qr-link'),
    linkRow: $('link-row'),
    copyLink: $('copy-link'),
    matchBox: $('match-box'),
    matchCode: $('match-code'),
    status: $('status'),
    expiry: $('expiry'),
    newQr: $('new-qr'),
    cancel: $('cancel'),
    loggedIn: $('logged-in'),
    sessionInfo: $('session-info'),
    logout: $('logout')
  };

  var current = null;      // the login being shown, or null
  var generation = 0;      // bumps on every new attempt; stale async work checks it
  var retryTimer = null;
  var renewWhenVisible = false;
  var autoRenewals = 0;    // consecutive automatic renewals without a scan

  // ---- helpers -----------------------------------------------------------

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function request(method, url, body, signal) {
    var opts = {
      method: method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Accept': 'application/json' }
    };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    if (signal) opts.signal = signal;
    return fetch(url, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        return { status: res.status, ok: res.ok, data: data, headers: res.headers };
      });
    });
  }

  function retryAfterMs(r, fallbackMs) {
    var v = r && r.headers && r.headers.get('Retry-After');
    var n = v ? parseInt(v, 10) : NaN;
    return isFinite(n) && n >= 0 ? Math.min(n, 120) * 1000 : fallbackMs;
  }

  function backoffMs(failures) {
    return Math.min(30000, 1000 * Math.pow(2, Math.min(failures, 5))) * (0.75 + Math.random() * 0.5);
  }

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.className = 'status' + (kind ? ' ' + kind : '');
  }

  function setOverlay(text) {
    if (text) {
      el.qrOverlay.textContent = text;
      el.qrOverlay.hidden = false;
      el.qrBox.classList.add('dim');
    } else {
      el.qrOverlay.textContent = '';
      el.qrOverlay.hidden = true;
      el.qrBox.classList.remove('dim');
    }
  }

  function fmtCountdown(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    var m = Math.floor(s / 60);
    s = s % 60;
    return m + ':' + (s < 10 ? '0' : '') + s;
  }

  function userName(user) {
    if (!user) return '';
    return user.name || user.id || '';
  }

  function loginPath(login, suffix) {
    return '/v1/logins/' + encodeURIComponent(login.id) + (suffix || '');
  }

  // ---- lifecycle of one login ---------------------------------------------

  function stopWatching(login) {
    if (!login) return;
    if (login.es) { login.es.close(); login.es = null; }
    if (login.abort) { login.abort.abort(); login.abort = null; }
  }

  function leaveCurrent() {
    if (current) {
      current.final = true;
      stopWatching(current);
    }
    current = null;
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
  }

  function scheduleRetry(ms) {
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = setTimeout(function () { retryTimer = null; startLogin(); }, ms);
  }

  function showLoginView() {
    el.doneView.hidden = true;
    el.loginView.hidden = false;
  }

  function offerNewCode(message, kind, overlay) {
    setStatus(message, kind);
    setOverlay(overlay || '');
    el.linkRow.hidden = true;
    el.cancel.hidden = true;
    el.newQr.hidden = false;
    el.expiry.textContent = '';
  }

  function startLogin() {
    leaveCurrent();
    renewWhenVisible = false;
    var myGen = ++generation;
    showLoginView();
    el.newQr.hidden = true;
    el.cancel.hidden = true;
    el.matchBox.hidden = true;
    el.linkRow.hidden = true;
    el.expiry.textContent = '';
    setOverlay('Loading…');
    setStatus('Preparing a login code…');

    request('POST', '/v1/logins', { binding: 'cookie' }).then(function (r) {
      if (myGen !== generation) return;
      if ((r.status === 201 || r.status === 200) && r.data && r.data.login_id) {
        beginLogin(r.data);
      } else if (r.status === 429) {
        var wait = retryAfterMs(r, 5000);
        setStatus('Too many attempts. Trying again in ' + Math.ceil(wait / 1000) + ' s…', 'warn');
        scheduleRetry(wait);
      } else if (r.status === 503) {
        setStatus('The login service is temporarily unavailable. Retrying…', 'warn');
        scheduleRetry(5000);
      } else {
        offerNewCode('Could not create a login code' +
          (r.data && r.data.message ? ': ' + r.data.message : '') + '.', 'bad', 'Unavailable');
      }
    }, function () {
      if (myGen !== generation) return;
      setStatus('Cannot reach the server. Retrying…', 'warn');
      scheduleRetry(5000);
    });
  }

  function beginLogin(d) {
    var login = {
      id: d.login_id,
      gen: generation,
      events: d.events || ('/v1/logins/' + encodeURIComponent(d.login_id) + '/events'),
      status: d.status || ('/v1/logins/' + encodeURIComponent(d.login_id)),
      state: 'pending',
      version: -1,
      deadline: Date.now() + (Number(d.expires_in) > 0 ? Number(d.expires_in) : 120) * 1000,
      final: false,
      es: null,
      abort: null
    };
    current = login;

    el.qr.src = d.qr_svg || ('/v1/logins/' + encodeURIComponent(d.login_id) + '/qr.svg');
    el.qrLink.href = d.qr_payload;
    el.qrLink.textContent = d.qr_payload;
    el.linkRow.hidden = false;
    if (d.match_code) {
      el.matchCode.textContent = String(d.match_code);
      el.matchBox.hidden = false;
    } else {
      el.matchCode.textContent = '';
      el.matchBox.hidden = true;
    }
    el.cancel.hidden = false;
    setStatus('Waiting for your phone to scan the code…');
    tick();
    watch(login);
  }

  // ---- watching: SSE first, long-poll as the fallback ---------------------

  var EVENT_NAMES = ['state', 'scanned', 'approved', 'denied', 'cancelled', 'expired', 'consumed', 'pending', 'message'];

  function watch(login) {
    if (typeof window.EventSource !== 'function') { poll(login); return; }
    var es;
    try {
      es = new EventSource(login.events);
    } catch (e) {
      poll(login);
      return;
    }
    login.es = es;
    var errors = 0;
    var onEvent = function (ev) {
      if (login !== current || login.final) return;
      errors = 0;
      var data = null;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (!data || typeof data !== 'object') return;
      if (!data.state && ev.type !== 'message' && ev.type !== 'state') data.state = ev.type;
      apply(login, data);
    };
    EVENT_NAMES.forEach(function (name) { es.addEventListener(name, onEvent); });
    es.onopen = function () { errors = 0; };
    es.onerror = function () {
      if (login !== current || login.final) { es.close(); return; }
      errors++;
      // A closed stream (e.g. 404) or repeated failures: switch to long-polling.
      if (es.readyState === 2 || errors >= SSE_MAX_ERRORS) {
        es.close();
        login.es = null;
        poll(login);
      }
    };
  }

  function poll(login) {
    var failures = 0;
    (function loop() {
      if (login !== current || login.final) return;
      var url = new URL(login.status, window.location.href);
      url.searchParams.set('wait', String(POLL_WAIT_S));
      if (login.state) url.searchParams.set('since', login.state);
      var ctrl = typeof AbortController === 'function' ? new AbortController() : null;
      login.abort = ctrl;
      request('GET', url.toString(), undefined, ctrl ? ctrl.signal : undefined).then(function (r) {
        if (login !== current || login.final) return;
        if (r.status === 200 && r.data) {
          failures = 0;
          apply(login, r.data);
          loop();
        } else if (r.status === 404) {
          // Unknown / expired / consumed look the same to us: get a fresh code.
          expired(login);
        } else if (r.status === 429) {
          sleep(retryAfterMs(r, 5000)).then(loop);
        } else {
          failures++;
          sleep(backoffMs(failures)).then(loop);
        }
      }, function () {
        if (login !== current || login.final) return;
        failures++;
        sleep(backoffMs(failures)).then(loop);
      });
    })();
  }

  function apply(login, data) {
    if (login !== current || login.final) return;
    var v = Number(data.version);
    if (isFinite(v) && data.version !== undefined && data.version !== null) {
      if (v < login.version) return; // out of order
      login.version = v;
    }
    if (Number(data.expires_in) > 0) {
      login.deadline = Date.now() + Number(data.expires_in) * 1000;
    }
    var state = data.state;
    if (!state) return;
    login.state = state;
    switch (state) {
      case 'pending':
        setStatus('Waiting for your phone to scan the code…');
        break;
      case 'scanned':
        autoRenewals = 0;
        setOverlay('Scanned');
        var who = userName(data.user);
        setStatus(who ? 'Scanned by ' + who + ' — confirm on your phone'
                      : 'Scanned — confirm on your phone', 'warn');
        break;
      case 'approved':
        login.final = true;
        stopWatching(login);
        redeem(login);
        break;
      case 'denied':
        login.final = true;
        stopWatching(login);
        offerNewCode('The login was denied on the phone.', 'bad', 'Denied');
        break;
      case 'cancelled':
        login.final = true;
        stopWatching(login);
        offerNewCode('The login was cancelled.', 'bad', 'Cancelled');
        break;
      case 'expired':
        expired(login);
        break;
      case 'consumed':
        login.final = true;
        stopWatching(login);
        checkSessionOr(function () {
          offerNewCode('This code has already been used.', 'bad', 'Used');
        });
        break;
      default:
        break;
    }
  }

  function expired(login) {
    if (login !== current) return;
    login.final = true;
    stopWatching(login);
    autoRenewals++;
    if (document.hidden || autoRenewals > 20) {
      // Don't churn codes for a tab nobody looks at; renew when it is shown again.
      renewWhenVisible = true;
      offerNewCode('The code has expired.', '', 'Expired');
      return;
    }
    setStatus('The code expired — getting a new one…');
    startLogin();
  }

  function redeem(login) {
    setStatus('Approved on your phone — logging you in…', 'ok');
    setOverlay('Approved');
    el.cancel.hidden = true;
    el.expiry.textContent = '';
    request('POST', loginPath(login, '/redeem')).then(function (r) {
      if (login !== current) return;
      if (r.status === 200 && r.data && r.data.user) {
        showLoggedIn(r.data.user, r.data.expires_in ? Date.now() + Number(r.data.expires_in) * 1000 : null);
      } else if (r.status === 429) {
        sleep(retryAfterMs(r, 2000)).then(function () { redeem(login); });
      } else if (r.status === 503 || r.status >= 500) {
        setStatus('The login service is busy — retrying…', 'warn');
        sleep(2000).then(function () { redeem(login); });
      } else {
        checkSessionOr(function () {
          offerNewCode('Could not complete the login (the code was already used or has expired).', 'bad', 'Failed');
        });
      }
    }, function () {
      if (login !== current) return;
      setStatus('Connection lost — retrying…', 'warn');
      sleep(2000).then(function () { redeem(login); });
    });
  }

  // ---- the logged-in view -------------------------------------------------

  function showLoggedIn(user, expiresAtMs) {
    leaveCurrent();
    generation++;
    autoRenewals = 0;
    el.loginView.hidden = true;
    el.doneView.hidden = false;
    el.loggedIn.textContent = 'Logged in as ' + userName(user);
    var info = [];
    if (user && user.id && user.id !== user.name) info.push('User id: ' + user.id);
    if (expiresAtMs && isFinite(expiresAtMs)) {
      info.push('Session valid until ' + new Date(expiresAtMs).toLocaleString());
    }
    el.sessionInfo.textContent = info.join(' · ');
    el.logout.disabled = false;
    el.logout.focus();
  }

  function checkSessionOr(otherwise) {
    request('GET', '/v1/session').then(function (r) {
      if (r.status === 200 && r.data && r.data.user) {
        showLoggedIn(r.data.user, r.data.expires_at ? Date.parse(r.data.expires_at) : null);
      } else {
        otherwise();
      }
    }, otherwise);
  }

  function logout() {
    el.logout.disabled = true;
    request('POST', '/v1/session/logout').then(function () {
      startLogin();
      setStatus('You have been logged out. Scan the new code to log in again.');
    }, function () {
      el.logout.disabled = false;
    });
  }

  // ---- timers and UI events -----------------------------------------------

  function tick() {
    var login = current;
    if (!login || login.final) return;
    var left = login.deadline - Date.now();
    el.expiry.textContent = left > 0 ? 'Code expires in ' + fmtCountdown(left) : 'Code expired';
    // Give the server a moment to announce the expiry itself first.
    if (left < -1500) expired(login);
  }
  setInterval(tick, 1000);

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && renewWhenVisible) {
      autoRenewals = 0;
      startLogin();
    }
  });

  el.qr.addEventListener('load', function () {
    if (current && !current.final && current.state === 'pending') setOverlay('');
  });
  el.qr.addEventListener('error', function () {
    if (current && !current.final) setStatus('Could not load the QR image; use the link below.', 'warn');
  });

  el.newQr.addEventListener('click', function () { autoRenewals = 0; startLogin(); });

  el.cancel.addEventListener('click', function () {
    var login = current;
    if (!login || login.final) return;
    el.cancel.disabled = true;
    request('DELETE', loginPath(login)).then(function () {
      el.cancel.disabled = false;
      apply(login, { state: 'cancelled' });
    }, function () {
      el.cancel.disabled = false;
    });
  });

  el.copyLink.addEventListener('click', function () {
    var text = el.qrLink.textContent;
    if (!text) return;
    var done = function () {
      el.copyLink.textContent = 'Copied';
      setTimeout(function () { el.copyLink.textContent = 'Copy'; }, 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { selectLink(); });
    } else {
      selectLink();
    }
  });

  function selectLink() {
    var range = document.createRange();
    range.selectNodeContents(el.qrLink);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  el.logout.addEventListener('click', logout);

  window.addEventListener('pagehide', function () {
    if (current) stopWatching(current);
  });
  window.addEventListener('pageshow', function (ev) {
    // Restored from the back/forward cache: the stream was closed on pagehide.
    if (ev.persisted && current && !current.final && !current.es && !current.abort) watch(current);
  });

  // ---- start: already logged in? ------------------------------------------

  checkSessionOr(startLogin);
})();
