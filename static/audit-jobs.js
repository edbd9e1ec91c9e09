// Refresh the jobs table while a job is queued or running (a static file: the CSP allows no inline script).
(function () {
  const active = () => Array.from(document.querySelectorAll("#jobs td.status")).some(td => /queued|running/.test(td.textContent));
  if (!active()) return;
  setTimeout(() => window.location.reload(), 1500);
})();
