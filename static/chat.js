// Atrium web chat: streams answers from the conversations API. Model output is inserted as text while it
// streams; the final rendering is HTML the server sanitised (Markdown + nh3). No build step.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const form = $("composer");
  let conversationId = JSON.parse($("conversation-id").textContent) || null;
  let controller = null;

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    return fetch(url, {
      method, credentials: "same-origin", signal: controller ? controller.signal : undefined,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json, text/event-stream" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function showError(text) {
    const box = $("chat-error");
    box.textContent = text;
    box.hidden = !text;
  }

  async function errorText(response) {
    try {
      const data = await response.json();
      const message = (data.error && data.error.message) || data.detail || JSON.stringify(data);
      const retry = response.headers.get("retry-after");
      return retry ? `${message} (retry in ${retry} s)` : message;
    } catch (e) {
      return `Request failed (${response.status}).`;
    }
  }

  function bubble(role) {
    const hint = $("empty-hint");
    if (hint) hint.remove();
    const article = document.createElement("article");
    article.className = `message ${role}`;
    const body = document.createElement("div");
    body.className = "body";
    article.appendChild(body);
    messages.appendChild(article);
    article.scrollIntoView({ block: "end" });
    return article;
  }

  function busy(on) {
    $("send").disabled = on;
    $("stop").hidden = !on;
    const retry = $("retry");
    if (retry) retry.hidden = on || !messages.querySelector(".message");
  }

  async function refreshUsage() {
    const response = await fetch("/api/usage/me/", { credentials: "same-origin" });
    if (!response.ok) return;
    const usage = await response.json();
    $("usage-requests").textContent = usage.requests;
    $("usage-tokens").textContent = usage.input_tokens + usage.output_tokens;
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

  async function stream(url, payload, target) {
    controller = new AbortController();
    busy(true);
    showError("");
    const body = target.querySelector(".body");
    body.classList.add("streaming");
    try {
      const response = await api("POST", url, payload);
      if (!response.ok) {
        target.remove();
        showError(await errorText(response));
        return false;
      }
      let text = "";
      await readStream(response, (name, data) => {
        if (name === "content_block_delta" && data.delta && data.delta.type === "text_delta") {
          text += data.delta.text;
          body.textContent = text;  // text only while streaming: nothing the model writes is parsed as HTML
          target.scrollIntoView({ block: "end" });
        } else if (name === "error") {
          target.classList.add("incomplete");
          showError(`The answer was cut off: ${data.error.message}`);
        } else if (name === "atrium.saved") {
          body.innerHTML = data.html;  // sanitised server-side (Markdown + nh3)
          target.dataset.id = data.message_id;
          if (data.incomplete) target.classList.add("incomplete");
        }
      });
      return true;
    } catch (err) {
      if (err.name === "AbortError") {
        target.classList.add("incomplete");
        showError("Stopped.");
      } else {
        showError(`Connection lost: ${err.message}`);
      }
      return false;
    } finally {
      body.classList.remove("streaming");
      controller = null;
      busy(false);
      refreshUsage();
    }
  }

  async function ensureConversation(model, title) {
    if (conversationId) return conversationId;
    const response = await api("POST", "/api/conversations/", { model });
    if (!response.ok) {
      showError(await errorText(response));
      return null;
    }
    const created = await response.json();
    conversationId = created.id;
    history.replaceState(null, "", `/chat/${conversationId}/`);
    const list = $("conversation-list");
    if (list) {
      const empty = list.querySelector(".muted");
      if (empty) empty.remove();
      const item = document.createElement("li");
      item.className = "active";
      const link = document.createElement("a");
      link.href = `/chat/${conversationId}/`;
      link.textContent = title || "New chat";
      item.appendChild(link);
      list.prepend(item);
    }
    return conversationId;
  }

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const prompt = $("prompt");
      const content = prompt.value.trim();
      if (!content) return;
      const model = $("model").value;
      const id = await ensureConversation(model, content.split(/\s+/).join(" ").slice(0, 60));
      if (!id) return;
      const mine = bubble("user");
      mine.querySelector(".body").textContent = content;
      prompt.value = "";
      const ok = await stream(`/api/conversations/${id}/messages/`, { content, model }, bubble("assistant"));
      if (!ok && !messages.querySelector(".message.assistant")) prompt.value = content;
    });
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    $("stop").addEventListener("click", () => controller && controller.abort());
    $("retry").addEventListener("click", async () => {
      if (!conversationId) return;
      const last = messages.querySelector(".message:last-of-type");
      const target = last && last.classList.contains("assistant") ? last : bubble("assistant");
      target.classList.remove("incomplete");
      target.querySelector(".body").textContent = "";
      await stream(`/api/conversations/${conversationId}/retry/`, { model: $("model").value }, target);
    });
  }
  const newChat = $("new-chat");
  if (newChat) newChat.addEventListener("click", () => { window.location.href = "/chat/"; });
  const rename = $("rename");
  if (rename) rename.addEventListener("click", async () => {
    const title = window.prompt("New title", $("conversation-title").textContent);
    if (!title) return;
    const response = await api("PATCH", `/api/conversations/${conversationId}/`, { title });
    if (response.ok) $("conversation-title").textContent = (await response.json()).title;
    else showError(await errorText(response));
  });
  const del = $("delete");
  if (del) del.addEventListener("click", async () => {
    if (!window.confirm("Delete this conversation?")) return;
    const response = await api("DELETE", `/api/conversations/${conversationId}/`);
    if (response.ok) window.location.href = "/chat/";
    else showError(await errorText(response));
  });
})();
