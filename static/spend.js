// The chat's spend panel (templates/chat/_spend.html): refreshed from /api/usage/me/ whenever the chat updates its
// usage line (after every answer), so it shows what the budget check itself reads. A static file: the CSP allows
// no inline script.
(function () {
  "use strict";
  const panel = document.getElementById("spend");
  if (!panel) return;
  const watched = document.getElementById("usage-requests") || document.getElementById("usage");

  function budgetItem(b) {
    const li = document.createElement("li");
    li.className = "spend-budget";
    const label = b.budget.charAt(0).toUpperCase() + b.budget.slice(1);
    const parts = [[null, `${label}: `], ["budget-spent", b.spent], [null, " of "], ["budget-limit", b.limit],
      [null, " used, "], ["budget-left", b.left], [null, " left; resets "]];
    for (const [cls, text] of parts) {
      if (cls) {
        const span = document.createElement("span");
        span.className = cls;
        span.textContent = text;
        li.appendChild(span);
      } else {
        li.appendChild(document.createTextNode(text));
      }
    }
    const time = document.createElement("time");
    time.dateTime = b.resets_at;
    time.textContent = b.resets_at.slice(0, 10);
    li.appendChild(time);
    li.appendChild(document.createTextNode("."));
    return li;
  }

  let pending = null;
  async function refresh() {
    const response = await fetch("/api/usage/me/", { credentials: "same-origin" });
    if (!response.ok) return;
    const usage = await response.json();
    document.getElementById("spend-today").textContent = usage.cost_today;
    document.getElementById("spend-month").textContent = usage.cost_month;
    const list = document.getElementById("spend-budgets");
    list.replaceChildren(...usage.budgets.map(budgetItem));
    panel.dataset.refreshed = String(Date.now());
  }
  function soon() {
    clearTimeout(pending);
    pending = setTimeout(() => { refresh().catch(() => {}); }, 150);
  }
  if (watched) new MutationObserver(soon).observe(watched, { childList: true, characterData: true, subtree: true });
  document.addEventListener("atrium:usage", soon);
})();
