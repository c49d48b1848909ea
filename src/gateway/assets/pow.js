// Solves the proof-of-work captcha of the forgot-password form: a decimal
// nonce such that SHA-256(challenge ":" nonce) starts with `bits` zero bits
// (docs/decisions.md, "Captcha"). Without JavaScript the nonce is typed in.
(function () {
  const form = document.getElementById('forgot');
  const status = document.getElementById('pow-status');
  if (!form || !window.crypto || !crypto.subtle) return;
  const nonce = form.elements.namedItem('nonce');
  const challenge = form.dataset.challenge;
  const bits = Number(form.dataset.bits);
  const utf8 = new TextEncoder();
  function zeroBits(bytes) {
    let n = 0;
    for (const b of bytes) {
      if (b !== 0) return n + Math.clz32(b) - 24;
      n += 8;
    }
    return n;
  }
  const solved = (async function () {
    for (let n = 0; ; n++) {
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', utf8.encode(challenge + ':' + n)));
      if (zeroBits(digest) >= bits) return String(n);
    }
  })();
  status.textContent = 'Your browser is solving the puzzle...';
  solved.then(function (value) {
    nonce.value = value;
    status.textContent = 'Puzzle solved.';
  });
  form.addEventListener('submit', function (event) {
    if (nonce.value) return;
    event.preventDefault();
    solved.then(function () { form.submit(); });
  });
})();
