// qrlogin phone side, shared by /m/{id} (confirm.html) and /phone (phone.html):
// demo sign-in, scan, show the request's context, approve or deny.
// Never logs or displays the mobile token.
(function () {
  'use strict';

  // What the server rendered into the page: its public path, the site's
  // name, whether the demo sign-in is on.
  var CFG = (function () {
    try {
      var m = document.querySelector('meta[name="qrlogin-config"]');
      return JSON.parse(m.getAttribute('content')) || {};
    } catch (e) { return {}; }
  })();
  var BASE = CFG.base || '';
  var SITE = CFG.site || 'this site';
  var TOKEN_KEY = 'qrl_mobile_token';
  var USER_KEY = 'qrl_mobile_user';
  var ID_RE = /^[A-Za-z0-9_-]{8,64}$/;

  // ---- storage ------------------------------------------------------------

  function getToken() {
    try { return window.localStorage.getItem(TOKEN_KEY) || null; } catch (e) { return null; }
  }
  function getUser() {
    try {
      var raw = window.localStorage.getItem(USER_KEY);
      return raw ? JSON.parse(raw) : null;
    } catch (e) { return null; }
  }
  function setSession(token, user) {
    try {
      window.localStorage.setItem(TOKEN_KEY, token);
      if (user) window.localStorage.setItem(USER_KEY, JSON.stringify(user));
    } catch (e) { /* private mode: keep going without persistence */ }
    memToken = token;
  }
  function clearSession() {
    try {
      window.localStorage.removeItem(TOKEN_KEY);
      window.localStorage.removeItem(USER_KEY);
    } catch (e) { /* ignore */ }
    memToken = null;
  }
  var memToken = null;
  function token() { return getToken() || memToken; }

  // ---- DOM ----------------------------------------------------------------

  // h('button', {id: 'x', class: 'y', onclick: fn}, 'text', child, ...)
  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k.slice(0, 2) === 'on' && typeof v === 'function') {
          node.addEventListener(k.slice(2), v);
        } else if (k === 'class') {
          node.className = v;
        } else if (v === true) {
          node.setAttribute(k, '');
        } else {
          node.setAttribute(k, String(v));
        }
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function render(container, children) {
    clear(container);
    append(container, children);
  }
  // After each step the new step's heading takes the focus, so keyboard and
  // screen-reader users continue where the page changed, not at the top.
  function focusHeading(container) {
    var hd = container.querySelector('h1, h2');
    if (!hd) return;
    hd.setAttribute('tabindex', '-1');
    hd.focus();
  }

  // ---- HTTP ---------------------------------------------------------------

  function api(method, path, body, useToken) {
    var headers = { 'Accept': 'application/json' };
    var t = useToken === false ? null : token();
    if (t) headers['Authorization'] = 'Bearer ' + t;
    var opts = { method: method, headers: headers, credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return fetch(BASE + path, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        return { status: res.status, data: data, headers: res.headers };
      });
    }, function () {
      return { status: 0, data: null, headers: null };
    });
  }

  function retryAfter(r) {
    var v = r.headers && r.headers.get('Retry-After');
    var n = v ? parseInt(v, 10) : NaN;
    return isFinite(n) ? n : null;
  }

  // Friendly text for an error answer of the phone API.
  function friendly(r, phase) {
    switch (r.status) {
      case 0: return 'Cannot reach the server. Check your connection and try again.';
      case 404:
        if (phase === 'signin') return 'Signing in here is not available. Use the ' + SITE + ' app.';
        return 'This login code is unknown or has already been used. Get a new code on your computer.';
      case 410: return 'This login code has expired. Get a new code on your computer and scan it again.';
      case 409:
        return phase === 'scan'
          ? 'This login request is no longer waiting for a phone: it was already scanned (perhaps by another device) or finished.'
          : 'This login request was already answered or is no longer waiting for you.';
      case 429: {
        var s = retryAfter(r);
        return 'Too many attempts. Please wait' + (s ? ' ' + s + ' s' : ' a moment') + ' and try again.';
      }
      case 503: return 'The login service is temporarily unavailable. Please try again shortly.';
      default:
        if (r.data && r.data.message) return r.data.message;
        return 'Something went wrong (HTTP ' + r.status + '). Please try again.';
    }
  }

  // ---- formatting ---------------------------------------------------------

  function fmtWhen(iso) {
    var t = Date.parse(iso);
    if (!isFinite(t)) return iso ? String(iso) : 'just now';
    var ago = Math.round((Date.now() - t) / 1000);
    var rel = ago < 10 ? 'just now'
      : ago < 60 ? ago + ' s ago'
      : ago < 3600 ? Math.round(ago / 60) + ' min ago'
      : Math.round(ago / 3600) + ' h ago';
    return new Date(t).toLocaleTimeString() + ' (' + rel + ')';
  }
  function fmtCountdown(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    var m = Math.floor(s / 60);
    s = s % 60;
    return m + ':' + (s < 10 ? '0' : '') + s;
  }
  function browserText(b) {
    if (!b) return 'Unknown browser';
    var name = b.browser || '';
    var os = b.os || '';
    if (name && os) return name + ' on ' + os;
    return name || os || b.user_agent || 'Unknown browser';
  }

  // ---- sign-in ------------------------------------------------------------

  var formCount = 0;

  // Renders a demo sign-in form into container; calls onSignedIn(user) on success.
  function renderSignIn(container, opts) {
    opts = opts || {};
    var n = ++formCount;
    var msg = h('p', { class: 'status' + (opts.messageKind ? ' ' + opts.messageKind : ''), role: 'status', 'aria-live': 'polite', id: 'signin-status' },
      opts.message || 'Sign in to the ' + SITE + ' app to continue.');
    var user = h('input', { type: 'text', id: 'username-' + n, name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true });
    var pass = h('input', { type: 'password', id: 'password-' + n, name: 'password', autocomplete: 'current-password', required: true });
    user.classList.add('username');
    pass.classList.add('password');
    var submit = h('button', { type: 'submit', id: 'signin' }, 'Sign in');
    var form = h('form', { class: 'signin', novalidate: true },
      h('label', { for: 'username-' + n }, 'Username'), user,
      h('label', { for: 'password-' + n }, 'Password'), pass,
      h('div', { class: 'actions' }, submit),
      CFG.demo ? h('p', { class: 'muted small', id: 'demo-hint' }, 'Demo users: alice / wonderland, bob / builder.') : null);

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var u = user.value.trim();
      var p = pass.value;
      if (!u || !p) {
        msg.textContent = 'Enter your username and password.';
        msg.className = 'status bad';
        (u ? pass : user).focus();
        return;
      }
      submit.disabled = true;
      msg.textContent = 'Signing in…';
      msg.className = 'status';
      api('POST', '/v1/mobile/session', { username: u, password: p }, false).then(function (r) {
        submit.disabled = false;
        if (r.status === 200 && r.data && r.data.token) {
          setSession(r.data.token, r.data.user || { id: u, name: u });
          pass.value = '';
          if (opts.onSignedIn) opts.onSignedIn(r.data.user);
        } else {
          msg.className = 'status bad';
          msg.textContent = r.status === 401 || r.status === 400
            ? 'Wrong username or password.'
            : friendly(r, 'signin');
          pass.value = '';
          pass.focus();
        }
      });
    });

    render(container, [
      opts.title === false ? null : h('h2', { id: 'step-title' }, opts.title || 'Sign in'),
      msg,
      form
    ]);
    focusHeading(container);
  }

  // Without the demo sign-in there is nothing to sign in to here: the
  // site's own app opens this link (and shows the same request).
  function renderUseApp(container, loginId) {
    var link = window.location.origin + BASE + '/m/' + encodeURIComponent(loginId || '');
    render(container, [
      h('h2', { id: 'step-title' }, 'Open this code with the ' + SITE + ' app'),
      h('p', { class: 'status', role: 'status', id: 'use-app' },
        'Scan the code on your computer with the ' + SITE + ' app on your phone, where you are already signed in. ' +
        'The app shows who is asking and lets you approve or deny.'),
      loginId ? h('p', { class: 'muted small mono' }, link) : null
    ]);
    focusHeading(container);
  }

  // ---- the confirm flow ---------------------------------------------------

  // Runs scan -> context -> approve/deny for loginId inside container.
  // opts.onFinished(result) is called with 'approved' | 'denied' | 'error'.
  // Returns a function that stops timers (when the container is reused).
  function runConfirm(container, loginId, opts) {
    opts = opts || {};
    var timers = [];
    var stopped = false;
    function stop() {
      stopped = true;
      timers.forEach(function (t) { clearInterval(t); });
      timers = [];
    }
    function finish(result) {
      stop();
      if (opts.onFinished) opts.onFinished(result);
    }

    function showError(text, title) {
      stop();
      render(container, [
        h('h2', { id: 'step-title' }, title || 'Cannot continue'),
        h('div', { class: 'error-box', role: 'alert', id: 'confirm-error' }, text)
      ]);
      focusHeading(container);
      if (opts.onFinished) opts.onFinished('error');
    }

    function signInAgain(message, then) {
      clearSession();
      if (opts.onSignedOut) opts.onSignedOut();
      if (!CFG.demo) { stop(); renderUseApp(container, loginId); return; }
      renderSignIn(container, {
        message: message,
        messageKind: 'warn',
        onSignedIn: function (user) {
          if (opts.onSignedIn) opts.onSignedIn(user);
          then();
        }
      });
    }

    if (!ID_RE.test(loginId || '')) {
      showError('This link does not contain a valid login code.', 'Invalid link');
      return stop;
    }

    function scan() {
      if (stopped) return;
      if (!token() && !CFG.demo) {
        stop();
        renderUseApp(container, loginId);
        return;
      }
      if (!token()) {
        renderSignIn(container, {
          message: 'Sign in to confirm a login on another device.',
          onSignedIn: function (user) {
            if (opts.onSignedIn) opts.onSignedIn(user);
            scan();
          }
        });
        return;
      }
      render(container, h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }, 'Checking the login request…'));
      api('POST', '/v1/mobile/logins/' + encodeURIComponent(loginId) + '/scan').then(function (r) {
        if (stopped) return;
        if (r.status === 200 && r.data) {
          showContext(r.data);
        } else if (r.status === 401) {
          signInAgain('Your session has expired. Please sign in again.', scan);
        } else {
          showError(friendly(r, 'scan'), r.status === 410 ? 'Code expired' : 'Cannot continue');
        }
      });
    }

    function showContext(d) {
      var site = d.site || {};
      var browser = d.browser || {};
      var deadline = Date.now() + (Number(d.expires_in) > 0 ? Number(d.expires_in) : 60) * 1000;
      var choices = Array.isArray(d.match_choices) ? d.match_choices.map(String) : null;
      var chosen = null;
      var busy = false;
      var place = d.place || {};
      var risky = d.risk && d.risk.level === 'high';
      // A high risk verdict: the user must say they are at that computer
      // (the API refuses an approve without "confirm_presence": true).
      var presence = null;
      var presenceBox = null;
      if (d.presence_required) {
        presence = h('input', { type: 'checkbox', id: 'confirm-presence' });
        presence.addEventListener('change', function () { refresh(); });
        presenceBox = h('p', { class: 'presence' },
          h('label', { for: 'confirm-presence' }, presence, ' I am at this computer now'));
      }

      var status = h('p', { class: 'status', id: 'confirm-status', role: 'status', 'aria-live': 'polite' },
        choices ? 'Pick the number shown on your computer, then approve.' : 'Approve only if you are logging in on that computer right now.');
      var countdown = h('dd', { id: 'expires' }, fmtCountdown(deadline - Date.now()));
      var approve = h('button', { type: 'button', id: 'approve', class: 'approve' }, 'Approve');
      var deny = h('button', { type: 'button', id: 'deny', class: 'danger' }, 'Deny');

      var choiceButtons = [];
      var choiceBox = null;
      if (choices && choices.length) {
        choiceButtons = choices.map(function (c) {
          var b = h('button', { type: 'button', class: 'match-choice', 'data-code': c, 'aria-pressed': 'false' }, c);
          b.addEventListener('click', function () {
            if (busy) return;
            chosen = c;
            choiceButtons.forEach(function (o) { o.setAttribute('aria-pressed', o === b ? 'true' : 'false'); });
            refresh();
          });
          return b;
        });
        choiceBox = h('fieldset', { class: 'choices' },
          h('legend', null, 'Which number does your computer show?'),
          h('div', { class: 'choice-row' }, choiceButtons));
      }

      function expired() {
        return Date.now() >= deadline;
      }
      function refresh() {
        approve.disabled = busy || expired() || (choiceButtons.length > 0 && chosen === null) ||
          (presence !== null && !presence.checked);
        if (presence) presence.disabled = busy || expired();
        deny.disabled = busy || expired();
        choiceButtons.forEach(function (b) { b.disabled = busy || expired(); });
      }

      function rows() {
        var out = [];
        function row(label, value, id) {
          out.push(h('dt', null, label));
          out.push(value && value.nodeType ? value : h('dd', id ? { id: id } : null, value));
        }
        if (d.client && d.client.name) row('Application', d.client.name, 'ctx-client');
        row('Site', site.name || 'Unknown site', 'ctx-site');
        row('Address', site.origin || '—', 'ctx-origin');
        row('Browser', browserText(browser), 'ctx-browser');
        row('IP address', browser.ip || 'unknown', 'ctx-ip');
        if (browser.network && !place.known) row('Network', browser.network, 'ctx-network');
        if (place.known) {
          var bp = place.browser || {};
          var pp = place.phone || {};
          row("Computer's place", bp.text || 'unknown', 'ctx-browser-place');
          row("Computer's network", bp.network || browser.network || 'unknown', 'ctx-browser-net');
          row('Your place', pp.text || 'unknown', 'ctx-phone-place');
          row('Your network', pp.network || 'unknown', 'ctx-phone-net');
        } else {
          row('Place', 'unknown', 'ctx-browser-place');
        }
        row('Requested', fmtWhen(d.created_at), 'ctx-when');
        row('Expires in', countdown);
        return out;
      }

      approve.addEventListener('click', function () { decide('approve'); });
      deny.addEventListener('click', function () { decide('deny'); });

      function decide(what) {
        if (busy) return;
        if (what === 'approve' && choiceButtons.length && chosen === null) {
          status.textContent = 'Pick the number shown on your computer first.';
          status.className = 'status bad';
          return;
        }
        if (what === 'approve' && presence && !presence.checked) {
          status.textContent = 'Tick "I am at this computer now" first.';
          status.className = 'status bad';
          return;
        }
        busy = true;
        refresh();
        status.className = 'status';
        status.textContent = what === 'approve' ? 'Approving…' : 'Denying…';
        var body = {};
        if (what === 'approve' && chosen !== null) body.match_code = chosen;
        if (what === 'approve' && presence && presence.checked) body.confirm_presence = true;
        api('POST', '/v1/mobile/logins/' + encodeURIComponent(loginId) + '/' + what, body).then(function (r) {
          if (stopped) return;
          busy = false;
          if (r.status === 200) {
            showResult(what === 'approve');
          } else if (r.status === 401) {
            signInAgain('Your session has expired. Please sign in again, then confirm.', function () { showContext(d); });
          } else if (r.status === 400 || r.status === 403 || r.status === 422 ||
                     (r.status === 409 && r.data && r.data.error === 'presence_required')) {
            status.className = 'status bad';
            status.textContent = (r.data && r.data.message) || 'That did not work. Please try again.';
            refresh();
          } else if (r.status === 429 || r.status === 503 || r.status === 0) {
            status.className = 'status bad';
            status.textContent = friendly(r, what);
            refresh();
          } else {
            showError(friendly(r, what));
          }
        });
      }

      function showResult(approved) {
        stop();
        render(container, [
          h('h2', { id: 'step-title' }, approved ? 'Approved' : 'Denied'),
          h('p', { class: approved ? 'success big-check' : 'error-box', id: 'result', role: 'status', 'aria-live': 'polite' },
            approved ? 'Approved — you can return to your computer.'
                     : 'Denied — the other device was not logged in.'),
          approved ? null : h('p', { class: 'muted small' },
            'If you did not try to log in, someone may have shown you this code: never approve a code you did not ask for.')
        ]);
        focusHeading(container);
        finish(approved ? 'approved' : 'denied');
      }

      render(container, [
        h('h2', { class: 'request-title', id: 'request-title' },
          'Log in to ' + ((d.client && d.client.name) || site.name || 'this site') + '?'),
        h('p', { class: 'origin mono' }, site.origin || ''),
        h('p', { class: risky ? 'place-summary warning' : 'place-summary', id: 'place-summary' },
          place.summary || 'The place of this login is unknown.'),
        h('dl', { class: 'context', 'aria-label': 'Login request details' }, rows()),
        choiceBox,
        presenceBox,
        status,
        h('div', { class: 'actions decide' }, deny, approve),
        h('p', { class: 'notice' },
          'Someone asked to log in to your account from the browser above. If that was not you, tap Deny.')
      ]);
      refresh();
      focusHeading(container);

      var t = setInterval(function () {
        var left = deadline - Date.now();
        countdown.textContent = left > 0 ? fmtCountdown(left) : 'expired';
        if (left <= 0 && !busy) {
          status.className = 'status bad';
          status.textContent = 'This request has expired. Get a new code on your computer.';
          refresh();
          clearInterval(t);
        }
      }, 1000);
      timers.push(t);
    }

    scan();
    return stop;
  }

  // Extracts the login id from a scanned / pasted link (PUBLIC_URL/m/{id}) or a bare id.
  function parseLoginLink(text) {
    var s = String(text || '').trim();
    if (!s) return null;
    if (ID_RE.test(s)) return { id: s, url: null };
    var url;
    try { url = new URL(s, window.location.href); } catch (e) { return null; }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
    var m = /\/m\/([A-Za-z0-9_-]+)\/?$/.exec(url.pathname);
    if (!m || !ID_RE.test(m[1])) return null;
    return { id: m[1], url: url };
  }

  // A "signed in as X · Sign out" bar.
  function renderWhoAmI(container, onSignOut) {
    var user = getUser();
    if (!token()) { clear(container); return; }
    var name = user ? (user.name || user.id) : 'you';
    render(container, h('span', { class: 'whoami' },
      'Signed in as ', h('strong', { id: 'whoami-name' }, name),
      h('button', {
        type: 'button', class: 'linkish', id: 'signout',
        onclick: function () { clearSession(); if (onSignOut) onSignOut(); }
      }, 'Sign out')));
  }

  // Id from a /m/{id} path (last non-empty segment).
  function idFromPath(pathname) {
    var parts = String(pathname || '').split('/').filter(Boolean);
    var last = parts.length ? parts[parts.length - 1] : '';
    try { return decodeURIComponent(last); } catch (e) { return last; }
  }

  window.QrlPhone = {
    h: h,
    render: render,
    clear: clear,
    api: api,
    hasToken: function () { return !!token(); },
    getUser: getUser,
    clearSession: clearSession,
    renderSignIn: renderSignIn,
    renderUseApp: renderUseApp,
    focusHeading: focusHeading,
    config: CFG,
    renderWhoAmI: renderWhoAmI,
    runConfirm: runConfirm,
    parseLoginLink: parseLoginLink,
    idFromPath: idFromPath
  };
})();
