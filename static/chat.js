// Atrium web chat: streams answers from the conversations API and renders them with static/markdown.js (the same
// pipeline as on reload). The list, search, versions, sharing and presets call the API and re-read server HTML.
// Every piece of text from the model, a title or a file name goes into the page as text or through DOMPurify.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const MD = window.AtriumMarkdown;
  const messages = $("messages");
  const form = $("composer");
  const prompt = $("prompt");
  let conversationId = JSON.parse($("conversation-id").textContent) || null;
  let presets = JSON.parse($("presets-data").textContent) || [];
  let controller = null;
  let pending = [];  // uploaded, not yet sent: [{id, name}]
  const versions = new Map();  // answer id -> [{id, text, incomplete}] (all versions of that answer)

  for (const m of JSON.parse($("thread-data").textContent) || []) {
    if (m.role === "assistant") for (const v of m.versions) versions.set(v.id, m.versions);
  }

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function api(method, url, body, signal) {
    const headers = { "X-CSRFToken": csrf(), Accept: "application/json, text/event-stream" };
    let payload = body;
    if (body !== undefined && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    return fetch(url, { method, credentials: "same-origin", signal, headers, body: payload });
  }

  function showError(text) {
    const box = $("chat-error");
    box.textContent = text;
    box.hidden = !text;
  }

  // "retry in 82738 s" helps nobody: say it the way a person would.
  function humanDuration(seconds) {
    const s = Math.max(1, Math.round(Number(seconds)));
    if (s < 90) return `${s} s`;
    const minutes = Math.round(s / 60);
    if (minutes < 90) return `${minutes} min`;
    const h = Math.floor(minutes / 60), m = minutes % 60;
    return m ? `${h} h ${m} min` : `${h} h`;
  }

  async function errorText(response) {
    try {
      const data = await response.json();
      let message = (data.error && data.error.message) || data.detail || `Request failed (${response.status}).`;
      const retry = response.headers.get("retry-after");
      message = message.replace(/Retry in (\d+) s\./, (_, s) => `Try again in ${humanDuration(s)}.`);
      if (retry && !/again in|resets at/i.test(message)) message += ` Try again in ${humanDuration(retry)}.`;
      return message;
    } catch (e) {
      return `Request failed (${response.status}).`;
    }
  }

  function announce(text) {
    const box = $("system-status");
    if (box) box.textContent = text;
  }

  // --- messages ------------------------------------------------------------------------------------------

  function setText(article, text) {
    article.atriumText = text;
    const body = article.querySelector(".body");
    if (article.dataset.role === "assistant") MD.render(body, text); else body.textContent = text;
  }

  function bubble(role, text) {
    const hint = $("empty-hint");
    if (hint) hint.remove();
    const article = document.createElement("article");
    article.className = `message ${role}`;
    article.dataset.role = role;
    article.setAttribute("aria-label", role === "user" ? "You" : "Answer");
    const body = document.createElement("div");
    body.className = `body ${role === "user" ? "plain" : "markdown"}`;
    article.appendChild(body);
    messages.appendChild(article);
    setText(article, text || "");
    return article;
  }

  function lastAnswer() {
    const answers = messages.querySelectorAll(".message.assistant");
    return answers.length ? answers[answers.length - 1] : null;
  }

  function toolButton(label, action, extra) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tool";
    button.dataset.action = action;
    button.textContent = label;
    if (extra) button.setAttribute("aria-label", extra);
    return button;
  }

  // The toolbar under each message: copy; edit (questions); versions and regenerate (the last answer).
  function decorate(article) {
    let bar = article.querySelector(".msg-actions");
    if (bar) bar.remove();
    bar = document.createElement("div");
    bar.className = "msg-actions";
    bar.appendChild(MD.copyButton("Copy", () => article.atriumText || ""));
    if (article.dataset.role === "user" && form) {
      const edit = toolButton("Edit", "edit");
      edit.title = "Edit this question and send it again";
      bar.appendChild(edit);
    }
    const list = versions.get(article.dataset.id);
    if (article.dataset.role === "assistant" && list && list.length > 1) {
      const index = list.findIndex((v) => v.id === article.dataset.id);
      const nav = document.createElement("span");
      nav.className = "versions";
      const prev = toolButton("‹", "version-prev", "Previous version");
      prev.disabled = index <= 0;
      const next = toolButton("›", "version-next", "Next version");
      next.disabled = index >= list.length - 1;
      const label = document.createElement("span");
      label.className = "version-label";
      label.textContent = `${index + 1} / ${list.length}`;
      nav.append(prev, label, next);
      bar.appendChild(nav);
    }
    if (article.dataset.role === "assistant" && article === lastAnswer() && form) {
      const again = toolButton("Regenerate", "regenerate");
      again.title = "Answer this question again (this answer stays as a version)";
      bar.appendChild(again);
    }
    article.appendChild(bar);
  }

  function decorateAll() {
    messages.querySelectorAll(".message").forEach(decorate);
  }

  function busy(on) {
    if (!form) return;
    $("send").disabled = on;
    $("stop").hidden = !on;
    $("retry").hidden = on || !messages.querySelector(".message");
    messages.querySelectorAll(".msg-actions .tool").forEach((b) => { b.disabled = on || b.disabled; });
    if (!on) decorateAll();
  }

  async function refreshUsage() {
    const response = await fetch("/api/usage/me/", { credentials: "same-origin" });
    if (!response.ok) return;
    const usage = await response.json();
    $("usage-requests").textContent = usage.requests;
    $("usage-requests-unit").textContent = usage.requests === 1 ? "request" : "requests";
    $("usage-tokens").textContent = usage.tokens_used;
    if ($("usage-limit") && usage.tokens_per_day_limit !== null) $("usage-limit").textContent = usage.tokens_per_day_limit;
  }

  // The server's view of every answer's versions (after a regenerate, a stop, a retry).
  async function syncVersions() {
    if (!conversationId) return;
    const response = await fetch(`/api/conversations/${conversationId}/`, { credentials: "same-origin" });
    if (!response.ok) return;
    const detail = await response.json();
    const groups = new Map();
    for (const m of detail.messages) {
      if (m.role !== "assistant" || !m.version_group) continue;
      const text = (m.content || []).filter((b) => b.type === "text").map((b) => b.text).join("");
      if (!groups.has(m.version_group)) groups.set(m.version_group, []);
      groups.get(m.version_group).push({ id: m.id, text, incomplete: m.incomplete });
    }
    versions.clear();
    for (const list of groups.values()) for (const v of list) versions.set(v.id, list);
    decorateAll();
  }

  // Reads `event: …\ndata: …\n\n` frames from a fetch body and calls onEvent(name, data).
  async function readStream(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", data = "";
        for (const line of frame.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  }

  // Streams one answer into `target`, rendering Markdown as it arrives (at most once per frame).
  async function stream(url, payload, target, question) {
    controller = new AbortController();
    busy(true);
    showError("");
    target.classList.add("streaming");
    target.classList.remove("incomplete");
    let text = "", scheduled = false;
    const paint = () => { scheduled = false; setText(target, text); };
    try {
      const response = await api("POST", url, payload, controller.signal);
      if (!response.ok) {
        target.remove();
        showError(await errorText(response));
        return false;
      }
      await readStream(response, (name, data) => {
        if (name === "content_block_delta" && data.delta && data.delta.type === "text_delta") {
          text += data.delta.text;
          if (!scheduled) { scheduled = true; requestAnimationFrame(paint); }
        } else if (name === "error") {
          target.classList.add("incomplete");
          showError(`The answer was cut off: ${data.error.message}`);
        } else if (name === "atrium.question") {  // the question is saved: it stays even if this answer is stopped
          if (question && data.question_id) question.dataset.id = data.question_id;
        } else if (name === "atrium.saved") {
          if (question && data.question_id) question.dataset.id = data.question_id;
          if (data.message_id) target.dataset.id = data.message_id;
          if (data.incomplete) target.classList.add("incomplete");
        }
      });
      paint();
      return true;
    } catch (err) {
      paint();
      target.classList.add("incomplete");
      showError(err.name === "AbortError" ? "Stopped. Retry answers the same question again." : `Connection lost: ${err.message}`);
      return false;
    } finally {
      target.classList.remove("streaming");
      controller = null;
      busy(false);
      refreshUsage();
      syncVersions();
    }
  }

  // --- the conversation itself ---------------------------------------------------------------------------

  function setConversation(id) {
    conversationId = id;
    history.replaceState(null, "", `/chat/${id}/`);
    $("thread-tools").hidden = false;
    $("export-md").href = `/api/conversations/${id}/export/?as=md`;
    $("export-json").href = `/api/conversations/${id}/export/?as=json`;
  }

  async function ensureConversation() {
    if (conversationId) return conversationId;
    const response = await api("POST", "/api/conversations/", { model: $("model").value, system: $("system").value });
    if (!response.ok) {
      showError(await errorText(response));
      return null;
    }
    setConversation((await response.json()).id);
    return conversationId;
  }

  // A rename or a deletion being confirmed in the list is never thrown away by a refresh that lands meanwhile
  // (the one after an answer, a search): the list is refreshed when the user is done with it instead.
  let listStale = false;
  function listBusy() { return $("conversation-list").querySelector(".rename-input, .confirm") !== null; }

  async function refreshList(force = false) {
    if (!force && listBusy()) { listStale = true; return; }
    const query = encodeURIComponent($("search").value || "");
    const response = await fetch(`/chat/list/?q=${query}&active=${conversationId || ""}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const html = await response.text();
    if (!force && listBusy()) { listStale = true; return; }  // the user started one while this was in flight
    listStale = false;
    $("conversation-list").innerHTML = html;  // our own template, escaped
  }

  function attachmentList(items) {
    const list = document.createElement("ul");
    list.className = "attachments";
    for (const item of items) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/chat/attachments/${item.id}/`;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = item.name;
      li.appendChild(link);
      list.appendChild(li);
    }
    return list;
  }

  async function send(content, editOf) {
    const id = await ensureConversation();
    if (!id) return;
    const files = pending;
    const mine = bubble("user", content);
    if (files.length) mine.prepend(attachmentList(files));
    const payload = { content, model: $("model").value };
    if (editOf) payload.edit_of = editOf;
    if (files.length) payload.attachments = files.map((f) => f.id);
    pending = [];
    renderPending();
    const first = !$("conversation-list").querySelector(`[data-id="${id}"]`);
    const ok = await stream(`/api/conversations/${id}/messages/`, payload, bubble("assistant"), mine);
    if (!ok && !mine.dataset.id) {  // refused before anything was saved: give the text back
      mine.remove();
      prompt.value = content;
      pending = files;
      renderPending();
    }
    if (first || ok) await refreshList();
    if (first && ok) {
      const title = document.querySelector("#conversation-list li.active .open");
      if (title) $("conversation-title").textContent = title.textContent;
    }
  }

  async function regenerate() {
    if (!conversationId || controller) return;
    let target = messages.querySelector(".message:last-of-type");
    if (!target || target.dataset.role !== "assistant") target = bubble("assistant");
    await stream(`/api/conversations/${conversationId}/retry/`, { model: $("model").value }, target, null);
  }

  function startEdit(article) {
    if (controller || article.querySelector(".edit-box")) return;
    const box = document.createElement("div");
    box.className = "edit-box";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.textContent = "Edit your question";
    const area = document.createElement("textarea");
    area.rows = Math.min(12, (article.atriumText || "").split("\n").length + 1);
    area.value = article.atriumText || "";
    area.id = `edit-${article.dataset.id}`;
    label.htmlFor = area.id;
    const save = toolButton("Save and send", "edit-save");
    save.className = "btn small";
    const cancel = toolButton("Cancel", "edit-cancel");
    cancel.className = "btn secondary small";
    box.append(label, area, save, cancel);
    article.querySelector(".body").hidden = true;
    article.appendChild(box);
    area.focus();
    cancel.addEventListener("click", () => { box.remove(); article.querySelector(".body").hidden = false; });
    save.addEventListener("click", async () => {
      const content = area.value.replace(/\s+$/, "");
      if (!content.trim()) return;
      let node = article;
      while (node) { const next = node.nextElementSibling; node.remove(); node = next; }
      await send(content, article.dataset.id);
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); save.click(); }
      if (event.key === "Escape") { event.stopPropagation(); cancel.click(); }
    });
  }

  async function showVersion(article, step) {
    const list = versions.get(article.dataset.id);
    if (!list) return;
    const index = list.findIndex((v) => v.id === article.dataset.id) + step;
    if (index < 0 || index >= list.length) return;
    const chosen = list[index];
    article.dataset.id = chosen.id;
    article.classList.toggle("incomplete", !!chosen.incomplete);
    setText(article, chosen.text);
    decorate(article);
    article.querySelector(`[data-action="version-${step < 0 ? "prev" : "next"}"]`)?.focus();
    const response = await api("POST", `/api/conversations/${conversationId}/messages/${chosen.id}/activate/`);
    if (!response.ok) showError(await errorText(response));
  }

  messages.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const article = button.closest(".message");
    const action = button.dataset.action;
    if (action === "edit") startEdit(article);
    else if (action === "regenerate") regenerate();
    else if (action === "version-prev") showVersion(article, -1);
    else if (action === "version-next") showVersion(article, 1);
  });

  // --- attachments ---------------------------------------------------------------------------------------

  function renderPending() {
    const list = $("pending");
    if (!list) return;
    list.replaceChildren();
    for (const file of pending) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = file.name;
      const remove = toolButton("Remove", "remove", `Remove ${file.name}`);
      remove.addEventListener("click", () => { pending = pending.filter((f) => f !== file); renderPending(); });
      li.append(name, remove);
      list.appendChild(li);
    }
    list.hidden = !pending.length;
  }

  const attach = $("attach");
  if (attach) attach.addEventListener("change", async () => {
    showError("");
    const id = await ensureConversation();
    if (!id) return;
    for (const file of Array.from(attach.files)) {
      const data = new FormData();
      data.append("file", file, file.name);
      const response = await api("POST", `/api/conversations/${id}/attachments/`, data);
      if (!response.ok) { showError(`${file.name}: ${await errorText(response)}`); continue; }
      const saved = await response.json();
      pending.push({ id: saved.id, name: saved.name });
    }
    attach.value = "";
    renderPending();
  });

  // --- composer ------------------------------------------------------------------------------------------

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const content = prompt.value.replace(/\s+$/, "");  // leading indentation of pasted code is kept
      if (!content.trim() || controller) return;
      prompt.value = "";
      await send(content, null);
    });
    prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    $("stop").addEventListener("click", () => controller && controller.abort());
    $("retry").addEventListener("click", regenerate);
  }

  // --- system prompt and presets -------------------------------------------------------------------------

  function renderPresets() {
    const select = $("preset");
    select.replaceChildren(select.options[0]);
    presets.forEach((p, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = p.name;
      select.appendChild(option);
    });
  }

  $("preset").addEventListener("change", () => {
    const chosen = presets[Number($("preset").value)];
    if (chosen && $("preset").value !== "") {
      $("system").value = chosen.system;
      $("preset-name").value = chosen.name;
      announce(`Preset “${chosen.name}” loaded${conversationId ? "; save it for this chat to use it" : ""}.`);
    }
  });
  $("system-save").addEventListener("click", async () => {
    if (!conversationId) { announce("The system prompt applies from the first message."); return; }
    const response = await api("PATCH", `/api/conversations/${conversationId}/`, { system: $("system").value });
    announce(response.ok ? "System prompt saved for this chat." : await errorText(response));
  });
  $("preset-save").addEventListener("click", async () => {
    const name = $("preset-name").value.trim();
    if (!name) { announce("Give the preset a name."); $("preset-name").focus(); return; }
    const response = await api("POST", "/api/presets/", { name, system: $("system").value });
    if (!response.ok) { announce(await errorText(response)); return; }
    presets = await response.json();
    renderPresets();
    announce(`Preset “${name}” saved.`);
  });

  $("preset-delete").addEventListener("click", async () => {
    const chosen = presets[Number($("preset").value)];
    if (!chosen || $("preset").value === "") { announce("Choose the preset to delete first."); $("preset").focus(); return; }
    const response = await api("DELETE", `/api/presets/?name=${encodeURIComponent(chosen.name)}`);
    if (!response.ok) { announce(await errorText(response)); return; }
    presets = await response.json();
    renderPresets();
    announce(`Preset “${chosen.name}” deleted.`);
  });

  // --- sharing -------------------------------------------------------------------------------------------

  $("share").addEventListener("click", async () => {
    if (!conversationId) return;
    const on = $("share").getAttribute("aria-pressed") !== "true";
    const response = await api(on ? "POST" : "DELETE", `/api/conversations/${conversationId}/share/`);
    if (!response.ok) { showError(await errorText(response)); return; }
    const { url } = await response.json();
    $("share").setAttribute("aria-pressed", on ? "true" : "false");
    $("share").textContent = on ? "Stop sharing" : "Share";
    $("share-link").hidden = !on;
    $("share-url").href = url || "";
    $("share-url").textContent = url || "";
  });
  $("share-copy").addEventListener("click", async () => {
    const ok = await MD.copyText($("share-url").href);
    $("share-copy").textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { $("share-copy").textContent = "Copy link"; }, 1500);
  });

  // --- the list: search, pin, rename and delete in place -------------------------------------------------

  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(refreshList, 200);
  });
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); refreshList(); });

  function renameInPlace(item) {
    const link = item.querySelector(".open");
    const input = document.createElement("input");
    input.value = link.textContent;
    input.className = "rename-input";
    input.maxLength = 200;
    input.setAttribute("aria-label", "New title");
    link.hidden = true;
    item.querySelector(".item-actions").hidden = true;
    link.after(input);
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      if (save && title && title !== link.textContent) {
        const response = await api("PATCH", `/api/conversations/${item.dataset.id}/`, { title });
        if (!response.ok) showError(await errorText(response));
        else if (item.dataset.id === conversationId) $("conversation-title").textContent = (await response.json()).title;
      }
      await refreshList(true);
      document.querySelector(`#conversation-list [data-id="${item.dataset.id}"] .rename`)?.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); finish(true); }
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
  }

  function confirmDelete(item) {
    const actions = item.querySelector(".item-actions");
    actions.hidden = true;
    const box = document.createElement("span");
    box.className = "confirm";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Confirm deletion");
    const yes = toolButton("Delete", "confirm-delete", `Delete “${item.querySelector(".open").textContent}” for good`);
    yes.classList.add("danger");
    const no = toolButton("Keep", "cancel-delete");
    box.append(yes, no);
    actions.after(box);
    yes.focus();
    no.addEventListener("click", async () => {
      box.remove();
      actions.hidden = false;
      if (listStale) await refreshList();
      document.querySelector(`#conversation-list [data-id="${item.dataset.id}"] .delete`)?.focus();
    });
    yes.addEventListener("click", async () => {
      const response = await api("DELETE", `/api/conversations/${item.dataset.id}/`);
      if (!response.ok) { showError(await errorText(response)); return; }
      if (item.dataset.id === conversationId) { window.location.href = "/chat/"; return; }
      await refreshList(true);
      $("search").focus();
    });
  }

  $("conversation-list").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const item = button.closest("li.conversation");
    if (button.dataset.action === "rename") renameInPlace(item);
    else if (button.dataset.action === "delete") confirmDelete(item);
    else if (button.dataset.action === "pin") {
      const pinned = item.dataset.pinned !== "true";
      const response = await api("PATCH", `/api/conversations/${item.dataset.id}/`, { pinned });
      if (!response.ok) { showError(await errorText(response)); return; }
      await refreshList();
      document.querySelector(`#conversation-list [data-id="${item.dataset.id}"] .pin`)?.focus();
    }
  });

  // --- the drawer (narrow screens) and keyboard shortcuts ------------------------------------------------

  const sidebar = $("sidebar");
  function drawer(open) {
    sidebar.classList.toggle("open", open);
    $("scrim").hidden = !open;
    $("drawer-open").setAttribute("aria-expanded", open ? "true" : "false");
    if (open) $("search").focus(); else $("drawer-open").focus();
  }
  $("drawer-open").addEventListener("click", () => drawer(true));
  $("drawer-close").addEventListener("click", () => drawer(false));
  $("scrim").addEventListener("click", () => drawer(false));

  async function copyLastAnswer() {
    const answer = lastAnswer();
    if (!answer) return;
    const ok = await MD.copyText(answer.atriumText || "");
    const button = answer.querySelector(".msg-actions .copy");
    if (button) {
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    }
  }

  document.addEventListener("keydown", (event) => {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (mod && event.shiftKey && key === "o") {
      event.preventDefault();
      window.location.href = "/chat/";
    } else if (mod && event.shiftKey && key === "c") {
      event.preventDefault();
      copyLastAnswer();
    } else if (mod && !event.shiftKey && key === "k") {
      event.preventDefault();
      if (getComputedStyle($("drawer-open")).display !== "none") drawer(true); else $("search").focus();
    } else if (event.key === "Escape" && event.shiftKey) {
      event.preventDefault();
      if (prompt) prompt.focus();
    } else if (event.key === "Escape") {
      if (controller) { event.preventDefault(); controller.abort(); }
      else if (sidebar.classList.contains("open")) drawer(false);
    }
  });

  decorateAll();
})();
