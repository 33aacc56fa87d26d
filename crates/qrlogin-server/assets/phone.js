// qrlogin: /phone, a simulated phone app. Sign in, then "scan" a login QR code
// with the camera, from an image file, or by pasting its link; then confirm.
(function () {
  'use strict';
  var P = window.QrlPhone;
  function $(id) { return document.getElementById(id); }

  var el = {
    who: $('whoami'),
    signinArea: $('signin-area'),
    scanArea: $('scan-area'),
    scanStatus: $('scan-status'),
    cameraStart: $('camera-start'),
    cameraStop: $('camera-stop'),
    videoWrap: $('video-wrap'),
    video: $('video'),
    file: $('qr-file'),
    linkForm: $('link-form'),
    linkInput: $('link-input'),
    canvas: $('canvas'),
    confirmSection: $('confirm-section'),
    scannedLink: $('scanned-link'),
    confirmArea: $('confirm-area'),
    scanAgain: $('scan-again')
  };

  var stream = null;
  var frameReq = 0;
  var lastFrame = 0;
  var stopConfirm = null;

  function setScanStatus(text, kind) {
    el.scanStatus.textContent = text;
    el.scanStatus.className = 'status' + (kind ? ' ' + kind : '');
  }

  function updateWho() { P.renderWhoAmI(el.who, onSignOut); }

  function onSignOut() {
    stopCamera();
    if (stopConfirm) { stopConfirm(); stopConfirm = null; }
    show();
  }

  // ---- views ----------------------------------------------------------------

  function show() {
    updateWho();
    if (sess) sess.area.hidden = true;
    el.confirmSection.hidden = true;
    if (!P.hasToken() && !P.config.demo) {
      // This stand-in signs in with the demo users only.
      el.scanArea.hidden = true;
      el.signinArea.hidden = false;
      P.renderUseApp(el.signinArea, null);
      return;
    }
    if (!P.hasToken()) {
      el.scanArea.hidden = true;
      el.signinArea.hidden = false;
      P.renderSignIn(el.signinArea, {
        title: 'Sign in',
        message: 'Sign in to the app first.',
        onSignedIn: function () { show(); }
      });
      return;
    }
    el.signinArea.hidden = true;
    P.clear(el.signinArea);
    el.scanArea.hidden = false;
    loadSessions();
    setScanStatus('Choose a way to scan.');
    if (focusNext) P.focusHeading(el.scanArea);
    focusNext = true;
  }
  // ---- sessions: where this user is logged in --------------------------------

  var sess = {
    area: $('sessions-area'),
    status: $('sessions-status'),
    list: $('sessions-list'),
    refresh: $('sessions-refresh'),
    all: $('sessions-revoke-all')
  };

  function sessStatus(text, kind) {
    sess.status.textContent = text;
    sess.status.className = 'status' + (kind ? ' ' + kind : '');
  }

  function describe(s) {
    var when = new Date(s.created_at);
    return s.browser + ' on ' + s.os + ' · ' + s.ip +
      (s.place && s.place.name ? ' · ' + s.place.name : '') +
      ' · since ' + (isNaN(when) ? s.created_at : when.toLocaleString());
  }

  function loadSessions() {
    if (!P.hasToken()) { sess.area.hidden = true; return; }
    sess.area.hidden = false;
    P.api('GET', '/v1/mobile/sessions').then(function (r) {
      if (r.status !== 200 || !r.data) {
        sessStatus(r.data && r.data.message ? r.data.message : 'Could not load your sessions.', 'error');
        return;
      }
      var items = r.data.sessions.map(function (s) {
        return P.h('li', { class: 'session', 'data-sid': s.sid },
          P.h('span', { class: 'session-what' }, describe(s)),
          P.h('button', {
            type: 'button', class: 'secondary session-logout',
            'aria-label': 'Log out ' + describe(s),
            onclick: function () { revokeOne(s.sid); }
          }, 'Log out'));
      });
      P.render(sess.list, items.length ? items : [P.h('li', { class: 'muted' }, 'No web sessions.')]);
      sess.all.disabled = items.length === 0;
      sessStatus(items.length + (items.length === 1 ? ' web session.' : ' web sessions.'));
    });
  }

  function revokeOne(sid) {
    P.api('DELETE', '/v1/mobile/sessions/' + encodeURIComponent(sid)).then(function (r) {
      sessStatus(r.status === 204 ? 'Logged out.' : 'That session had already ended.', r.status === 204 ? 'ok' : '');
      loadSessions();
    });
  }

  sess.refresh.addEventListener('click', loadSessions);
  sess.all.addEventListener('click', function () {
    P.api('POST', '/v1/mobile/sessions/revoke-all').then(function (r) {
      if (r.status === 200 && r.data) {
        sessStatus('Logged out everywhere (' + r.data.revoked + ').', 'ok');
      } else {
        sessStatus('Could not log out everywhere; try again.', 'error');
      }
      loadSessions();
    });
  });

  // The first view keeps the page's natural start; every later step focuses
  // its heading.
  var focusNext = false;

  function openLogin(text) {
    var parsed = P.parseLoginLink(text);
    if (!parsed) {
      setScanStatus('That is not a qrlogin login code (expected a link ending in /m/<code>).', 'bad');
      return false;
    }
    stopCamera();
    el.scanArea.hidden = true;
    el.confirmSection.hidden = false;
    var note = '';
    if (parsed.url && parsed.url.origin !== window.location.origin) {
      note = 'Note: this code is for ' + parsed.url.origin + '; this app is connected to ' +
        window.location.origin + '.';
    }
    el.scannedLink.textContent = note;
    el.scannedLink.hidden = !note;
    if (stopConfirm) stopConfirm();
    stopConfirm = P.runConfirm(el.confirmArea, parsed.id, {
      onSignedIn: updateWho,
      onSignedOut: updateWho,
      onFinished: function () { updateWho(); setTimeout(loadSessions, 1500); }
    });
    return true;
  }

  // ---- decoding -------------------------------------------------------------

  function decodeCanvas(w, h, attempts) {
    var ctx = el.canvas.getContext('2d', { willReadFrequently: true });
    var img = ctx.getImageData(0, 0, w, h);
    if (typeof window.jsQR !== 'function') return null;
    var code = window.jsQR(img.data, w, h, { inversionAttempts: attempts || 'attemptBoth' });
    return code && code.data ? code.data : null;
  }

  // Draws source onto the work canvas so that its longer side is maxDim
  // (only shrinking, unless grow is set) and returns the canvas size.
  function drawScaled(source, sw, sh, maxDim, grow) {
    var scale = maxDim / Math.max(sw, sh);
    if (!grow) scale = Math.min(1, scale);
    var w = Math.max(1, Math.round(sw * scale));
    var h = Math.max(1, Math.round(sh * scale));
    el.canvas.width = w;
    el.canvas.height = h;
    var ctx = el.canvas.getContext('2d', { willReadFrequently: true });
    // White first: transparent PNG/SVG backgrounds would otherwise read as black.
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = scale < 1;
    ctx.drawImage(source, 0, 0, w, h);
    return { w: w, h: h };
  }

  function decodeImage(img) {
    var sw = img.naturalWidth || 600;
    var sh = img.naturalHeight || 600;
    var longest = Math.max(sw, sh);
    // Small images are scaled up (crisp) so the finder patterns are big enough;
    // large ones are tried downscaled first (fast), then near full size.
    var tries = longest < 400 ? [[800, true]] : [[1000, false]];
    if (longest > 1000) tries.push([Math.min(2000, longest), false]);
    for (var i = 0; i < tries.length; i++) {
      var d = drawScaled(img, sw, sh, tries[i][0], tries[i][1]);
      var text = decodeCanvas(d.w, d.h, 'attemptBoth');
      if (text) return text;
    }
    return null;
  }

  el.file.addEventListener('change', function () {
    var f = el.file.files && el.file.files[0];
    if (!f) return;
    if (typeof window.jsQR !== 'function') {
      setScanStatus('The QR decoder did not load.', 'bad');
      return;
    }
    setScanStatus('Reading the image…');
    var url = URL.createObjectURL(f);
    var img = new Image();
    img.onload = function () {
      var text = null;
      try { text = decodeImage(img); } catch (e) { text = null; }
      URL.revokeObjectURL(url);
      if (!text) {
        setScanStatus('No QR code found in that image. Try a sharper or closer picture.', 'bad');
        return;
      }
      openLogin(text);
    };
    img.onerror = function () {
      URL.revokeObjectURL(url);
      setScanStatus('That file could not be read as an image.', 'bad');
    };
    img.src = url;
  });

  // ---- camera ---------------------------------------------------------------

  function stopCamera() {
    if (frameReq) { cancelAnimationFrame(frameReq); frameReq = 0; }
    if (stream) {
      stream.getTracks().forEach(function (t) { t.stop(); });
      stream = null;
    }
    el.video.srcObject = null;
    el.videoWrap.hidden = true;
    el.cameraStop.hidden = true;
    el.cameraStart.hidden = false;
    el.cameraStart.disabled = false;
  }

  function onFrame(ts) {
    frameReq = 0;
    if (!stream) return;
    // About 8 decodes a second is plenty and keeps a phone cool.
    if (ts - lastFrame >= 120 && el.video.readyState >= 2 && el.video.videoWidth) {
      lastFrame = ts;
      var d = drawScaled(el.video, el.video.videoWidth, el.video.videoHeight, 640);
      var text = null;
      try { text = decodeCanvas(d.w, d.h, 'dontInvert'); } catch (e) { text = null; }
      if (text) {
        if (openLogin(text)) return;
      }
    }
    frameReq = requestAnimationFrame(onFrame);
  }

  el.cameraStart.addEventListener('click', function () {
    if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') {
      setScanStatus('No camera available here (a camera needs HTTPS or localhost). Use an image or paste the link.', 'bad');
      return;
    }
    if (typeof window.jsQR !== 'function') {
      setScanStatus('The QR decoder did not load.', 'bad');
      return;
    }
    el.cameraStart.disabled = true;
    setScanStatus('Starting the camera…');
    navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: 'environment' } }, audio: false })
      .then(function (s) {
        stream = s;
        el.video.srcObject = s;
        el.videoWrap.hidden = false;
        el.cameraStart.hidden = true;
        el.cameraStop.hidden = false;
        return el.video.play();
      })
      .then(function () {
        setScanStatus('Point the camera at the QR code.');
        frameReq = requestAnimationFrame(onFrame);
      })
      .catch(function (err) {
        stopCamera();
        var name = err && err.name;
        setScanStatus(name === 'NotAllowedError' ? 'Camera permission was denied.'
          : name === 'NotFoundError' ? 'No camera found.'
          : 'Could not start the camera.', 'bad');
      });
  });

  el.cameraStop.addEventListener('click', function () {
    stopCamera();
    setScanStatus('Camera stopped.');
  });

  document.addEventListener('visibilitychange', function () {
    if (document.hidden && stream) { stopCamera(); setScanStatus('Camera stopped.'); }
  });

  // ---- paste ----------------------------------------------------------------

  el.linkForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var v = el.linkInput.value;
    if (!v.trim()) {
      setScanStatus('Paste the link shown under the QR code.', 'bad');
      el.linkInput.focus();
      return;
    }
    if (openLogin(v)) el.linkInput.value = '';
  });

  el.scanAgain.addEventListener('click', function () {
    if (stopConfirm) { stopConfirm(); stopConfirm = null; }
    el.file.value = '';
    P.clear(el.confirmArea);
    show();
  });

  show();
})();
