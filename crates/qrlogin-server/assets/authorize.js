// The OpenID Provider's authorize page: creates a login for the asking
// application (POST /oauth2/authorize/login with this page's query), shows
// its QR, watches it with Server-Sent Events (long-poll after repeated
// errors), and once approved or denied goes to /v1/logins/{id}/continue,
// which redirects back to the application with a code or an error.
(function () {
  'use strict';
  function $(id) { return document.getElementById(id); }
  // The mount path qrlogin serves under ('' at the origin root).
  var base = '';
  try { base = JSON.parse(document.querySelector('meta[name="qrlogin-config"]').content).base || ''; } catch (e) { base = ''; }
  var status = $('status');
  function say(text) { status.textContent = text; }

  function post(url, body) {
    return fetch(url, {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Accept': 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (d) { return { status: r.status, data: d }; });
    });
  }

  function finish(login) { window.location.assign(login['continue']); }

  function onState(login, state) {
    if (state === 'scanned') say('Scanned. Confirm on your phone…');
    else if (state === 'approved' || state === 'denied' || state === 'cancelled') {
      say(state === 'approved' ? 'Approved. Signing you in…' : 'Not approved.');
      finish(login);
      return true;
    } else if (state === 'expired' || state === 'consumed') {
      say('This code has expired.');
      $('retry').hidden = false;
      return true;
    }
    return false;
  }

  function longPoll(login, since) {
    fetch(login.status + '?wait=25&since=' + encodeURIComponent(since), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (d) { if (!onState(login, d.state)) longPoll(login, d.state); })
      .catch(function () { setTimeout(function () { longPoll(login, since); }, 2000); });
  }

  function watch(login) {
    var errors = 0;
    var last = 'pending';
    var es = new EventSource(login.events, { withCredentials: true });
    ['pending', 'scanned', 'approved', 'denied', 'cancelled', 'expired', 'consumed'].forEach(function (name) {
      es.addEventListener(name, function (ev) {
        errors = 0;
        var d = {};
        try { d = JSON.parse(ev.data); } catch (e) { d = { state: name }; }
        last = d.state || name;
        if (onState(login, last)) es.close();
      });
    });
    es.onerror = function () {
      errors += 1;
      if (errors >= 3) { es.close(); longPoll(login, last); }
    };
  }

  function start() {
    $('retry').hidden = true;
    say('Preparing a sign-in code…');
    post(base + '/oauth2/authorize/login', { query: window.location.search }).then(function (r) {
      if (r.status === 400 && r.data && r.data.redirect) { window.location.assign(r.data.redirect); return; }
      if (r.status !== 201) { say((r.data && r.data.message) || 'Could not start the sign-in.'); $('retry').hidden = false; return; }
      var login = r.data;
      document.title = 'Sign in to ' + login.client.name;
      $('authorize-title').textContent = 'Sign in to ' + login.client.name;
      $('client-line').textContent = 'Scan this code with your phone to sign in to ' + login.client.name + ', then confirm on the phone.';
      $('qr').src = login.qr_svg;
      $('qr').setAttribute('data-login-id', login.login_id);
      $('qr-link').href = login.qr_payload;
      $('qr-link').textContent = login.qr_payload;
      if (login.match_code) { $('match-code').textContent = login.match_code; $('match-box').hidden = false; }
      say('Waiting for your phone…');
      watch(login);
    }, function () { say('Could not reach the server.'); $('retry').hidden = false; });
  }

  $('retry').addEventListener('click', start);
  start();
})();
