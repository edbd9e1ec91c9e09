// The jobs table follows its jobs' progress by polling a small JSON endpoint (the table's data-poll) while one is
// queued or running, and updates the rows in place: no reload, so nothing typed elsewhere on the page is lost.
// Text from the server goes in as text (textContent), links only as the paths the server gave.
(function () {
  "use strict";
  const table = document.getElementById("jobs");
  if (!table || !table.dataset.poll) return;
  const url = table.dataset.poll;
  const body = table.tBodies[0];
  const live = document.getElementById("jobs-status");
  const ACTIVE = /^(queued|running)$/;
  let timer = null;

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function cell(className) {
    const td = document.createElement("td");
    td.className = className;
    return td;
  }

  function link(href, text, className) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.className = className;
    return a;
  }

  function newRow(job) {
    const tr = document.createElement("tr");
    tr.dataset.job = job.id;
    for (const name of ["kind", "subject", "requester", "created", "status", "progress", "result"]) tr.appendChild(cell(name));
    tr.querySelector(".kind").textContent = job.kind;
    tr.querySelector(".subject").textContent = job.subject;
    tr.querySelector(".requester").textContent = job.requested_by;
    tr.querySelector(".created").textContent = job.created;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.setAttribute("aria-label", `Progress of the ${job.kind} job for ${job.subject}`);
    const pct = document.createElement("span");
    pct.className = "pct";
    const step = document.createElement("span");
    step.className = "step";
    tr.querySelector(".progress").append(bar, " ", pct, " ", step);
    return tr;
  }

  function update(tr, job) {
    const status = tr.querySelector(".status");
    const before = status.textContent.trim().split(/\s/)[0];
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = job.status;
    status.replaceChildren(badge);
    if (job.error) {
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = ` (${job.error})`;
      status.append(" ", error);
    }
    tr.querySelector("progress").value = job.progress;
    tr.querySelector("progress").textContent = `${job.progress}%`;
    tr.querySelector(".pct").textContent = `${job.progress}%`;
    tr.querySelector(".step").textContent = ACTIVE.test(job.status) ? job.step || "" : "";
    const result = tr.querySelector(".result");
    result.replaceChildren();
    if (job.download) {
      result.appendChild(link(job.download, "Download ZIP", "download"));
    } else if (job.retry) {
      const form = document.createElement("form");
      form.method = "post";
      form.className = "inline";
      form.action = job.retry;
      const token = document.createElement("input");
      token.type = "hidden";
      token.name = "csrfmiddlewaretoken";
      token.value = csrf();
      const button = document.createElement("button");
      button.type = "submit";
      button.className = "link";
      button.textContent = "Retry";
      form.append(token, button);
      result.appendChild(form);
    } else if (job.summary) {
      result.append(job.summary);
      if (job.receipt) result.append(" · ", link(job.receipt, "Receipt", "receipt"));
    }
    if (before !== job.status && live) live.textContent = `The ${job.kind} job for ${job.subject} is ${job.status}.`;
  }

  async function poll() {
    timer = null;
    let data;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;  // signed out, or the permission was removed: stop quietly
      data = await response.json();
    } catch (err) {
      schedule(5000);  // the network blinked: try again later
      return;
    }
    const rows = new Map(Array.from(body.querySelectorAll("tr[data-job]")).map((tr) => [tr.dataset.job, tr]));
    for (const job of data.jobs.slice().reverse()) {  // oldest first, so each new one ends on top
      let tr = rows.get(job.id);
      if (!tr) {
        tr = newRow(job);
        body.prepend(tr);
        const none = body.querySelector("tr.none");
        if (none) none.remove();
      }
      update(tr, job);
    }
    if (data.jobs.some((job) => ACTIVE.test(job.status))) schedule(1500);
  }

  function schedule(ms) {
    if (timer === null) timer = setTimeout(poll, ms);
  }

  const active = () => Array.from(body.querySelectorAll("td.status")).some((td) => ACTIVE.test(td.textContent.trim().split(/\s/)[0]));
  if (active()) schedule(1500);
  // A job requested in another tab, or by a colleague, appears too once something is running; and a page left open
  // picks up a new job when it comes back into view.
  document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(0); });
})();
