// /device: a typed user code (RFC 8628) becomes its login's confirm page,
// where the phone sees the device's context and approves, as after a scan.
(function () {
  'use strict';
  var base = '';
  try { base = JSON.parse(document.querySelector('meta[name="qrlogin-config"]').content).base || ''; } catch (e) { base = ''; }
  var form = document.getElementById('device-form');
  var input = document.getElementById('user-code');
  var status = document.getElementById('device-status');
  var prefill = new URLSearchParams(window.location.search).get('user_code');
  if (prefill) input.value = prefill;
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    status.textContent = 'Looking the code up…';
    fetch(base + '/v1/device/lookup', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Accept': 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_code: input.value })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (d) {
        if (r.ok && d.confirm) { window.location.assign(d.confirm); return; }
        if (r.status === 429) status.textContent = 'Too many tries. Wait a minute, then try again.';
        else if (r.status === 404) status.textContent = 'That code is unknown or has expired. Check it on your device.';
        else status.textContent = d.message || 'That did not work.';
        input.focus();
      });
    }, function () { status.textContent = 'Could not reach the server.'; });
  });
})();
