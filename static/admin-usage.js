// Draws the admin's usage bars (a static file: the CSP allows no inline script).
(function () {
  const days = JSON.parse(document.getElementById("usage-days").textContent);
  function draw(id, value, cls) {
    const el = document.getElementById(id);
    const max = Math.max(1, ...days.map(value));
    for (const d of days) {
      const bar = document.createElement("div");
      if (cls) bar.className = cls;
      bar.style.height = `${(100 * value(d)) / max}%`;
      bar.title = `${d.day}: ${value(d)}`;
      el.appendChild(bar);
    }
  }
  draw("chart-tokens", (d) => d.input_tokens + d.output_tokens);
  draw("chart-requests", (d) => d.requests, "req");
})();
