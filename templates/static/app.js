// showroom: progressive enhancement only; every page works without this file.
(function () {
  // Live progress: an element with data-poll="URL" is refreshed from JSON every second.
  // When the phase reaches data-until, the page goes to data-then (or reloads).
  // data-field="save" watches the phase of the JSON's "save" object instead.
  function poll(el) {
    var url = el.getAttribute('data-poll');
    var field = el.getAttribute('data-field');
    var until = (el.getAttribute('data-until') || 'Ready').split(',');
    var then = el.getAttribute('data-then');
    function tick() {
      fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (s) {
            var phase = document.querySelector('[data-phase]');
            if (phase && s.phase) { phase.textContent = s.phase; phase.className = 'badge ' + s.phase; }
            var msg = document.querySelector('[data-message]');
            if (msg && s.message) { msg.textContent = s.message; }
            var eta = document.querySelector('[data-eta]');
            if (eta && s.eta) { eta.textContent = s.eta; eta.classList.toggle('late', !!s.late); }
            (s.progress || []).forEach(function (step) {
              var li = document.querySelector('[data-step="' + step.name + '"]');
              if (li) { li.className = step.state; var st = li.querySelector('.state'); if (st) st.textContent = step.state; }
            });
            var watched = field ? (s[field] && s[field].phase) : s.phase;
            if (until.indexOf(watched) >= 0) {
              if (then) { window.location.href = then; } else { window.location.reload(); }
              return;
            }
          }
          setTimeout(tick, 1000);
        })
        .catch(function () { setTimeout(tick, 2000); });
    }
    setTimeout(tick, 1000);
  }
  document.querySelectorAll('[data-poll]').forEach(poll);

  // Copy buttons.
  document.querySelectorAll('[data-copy]').forEach(function (b) {
    b.addEventListener('click', function () {
      var input = document.getElementById(b.getAttribute('data-copy'));
      input.select();
      var done = function () { b.textContent = 'Copied'; setTimeout(function () { b.textContent = 'Copy'; }, 1500); };
      if (navigator.clipboard) { navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand('copy'); done(); }); }
      else { document.execCommand('copy'); done(); }
    });
  });

  // Confirmation for destructive forms.
  document.querySelectorAll('form[data-confirm]').forEach(function (f) {
    f.addEventListener('submit', function (e) {
      if (!window.confirm(f.getAttribute('data-confirm'))) { e.preventDefault(); }
    });
  });
})();
