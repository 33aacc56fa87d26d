// qrlogin: /m/{id}, the page a phone's camera opens from the QR code.
(function () {
  'use strict';
  var P = window.QrlPhone;
  var area = document.getElementById('confirm-area');
  var who = document.getElementById('whoami');
  var loginId = P.idFromPath(window.location.pathname);
  var stop = null;

  function updateWho() { P.renderWhoAmI(who, start); }

  function start() {
    if (stop) stop();
    updateWho();
    stop = P.runConfirm(area, loginId, {
      onSignedIn: updateWho,
      onSignedOut: updateWho,
      onFinished: updateWho
    });
  }

  start();
})();
