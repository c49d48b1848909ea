// The pages' one script. Every page works without it, except that the
// captcha then has to be solved by hand (the page says how).
(function () {
  'use strict';
  // A page restored from the back-forward cache is asked for again, so that
  // after a sign-out the back button shows the sign-in page, not the account.
  window.addEventListener('pageshow', function (event) {
    if (event.persisted) location.reload();
  });

  // A refused form comes back with its error first in line for the keyboard
  // and screen readers (an alert present at load is not always announced).
  const error = document.getElementById('error');
  if (error) error.focus();
  // A form posts once: a double-click would otherwise send it twice, and the
  // first post of a one-time link spends it, so the second answer would say
  // "not valid" and the password the first one revealed would be lost.
  document.querySelectorAll('form').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = 'yes';
      form.querySelectorAll('button[type=submit]').forEach(function (button) {
        button.setAttribute('aria-disabled', 'true');
      });
    });
  });

  // The proof-of-work captcha (docs/decisions.md, "Captcha"): a decimal nonce
  // such that SHA-256(challenge ":" nonce) starts with `bits` zero bits.
  if (!window.crypto || !crypto.subtle) return;
  const utf8 = new TextEncoder();
  function zeroBits(bytes) {
    let n = 0;
    for (const b of bytes) {
      if (b !== 0) return n + Math.clz32(b) - 24;
      n += 8;
    }
    return n;
  }
  document.querySelectorAll('[data-challenge]').forEach(function (box) {
    const form = box.closest('form');
    const nonce = box.querySelector('input[name=nonce]');
    const status = box.querySelector('.captcha-status');
    const manual = box.querySelector('.captcha-manual');
    const challenge = box.dataset.challenge;
    const bits = Number(box.dataset.bits);
    manual.hidden = true;
    status.hidden = false;
    status.textContent = status.dataset.checking;
    // Digests in batches: one await per nonce would take minutes on a phone.
    const BATCH = 256;
    const solved = (async function () {
      for (let start = 0; ; start += BATCH) {
        const digests = [];
        for (let n = start; n < start + BATCH; n++) {
          digests.push(crypto.subtle.digest('SHA-256', utf8.encode(challenge + ':' + n)));
        }
        const found = (await Promise.all(digests)).findIndex(function (d) {
          return zeroBits(new Uint8Array(d)) >= bits;
        });
        if (found >= 0) return String(start + found);
      }
    })();
    solved.then(function (value) {
      nonce.value = value;
      status.textContent = status.dataset.done;
    });
    form.addEventListener('submit', function (event) {
      if (nonce.value) return;
      event.preventDefault();
      solved.then(function () { form.submit(); });
    });
  });
})();
