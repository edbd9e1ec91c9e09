// The one Markdown pipeline of the web chat, used while an answer streams and for every answer on a page load:
// marked (GFM: tables, fenced code) -> DOMPurify (an allow-list of tags and attributes, http(s)/mailto links only)
// -> highlight.js on the sanitised code elements (it reads their text, so it never sees markup from the model).
// Raw HTML written by the model is shown as text, never parsed. Libraries: static/vendor (pinned, `make vendor`).
(function () {
  "use strict";
  const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  }[c]));

  const parser = new window.marked.Marked({ gfm: true, breaks: false });
  parser.use({
    renderer: {
      html(token) { return escapeHtml(token.raw || token.text || ""); },  // model HTML is text
      image(token) { return escapeHtml(token.raw || ""); },  // no remote images: they would leak the reader
    },
  });

  const PURIFY = {
    ALLOWED_TAGS: ["p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li", "a",
      "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del", "input", "span"],
    ALLOWED_ATTR: ["href", "title", "class", "align", "type", "checked", "disabled", "start"],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };
  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
    if (node.tagName === "INPUT" && node.getAttribute("type") !== "checkbox") node.remove();
    if (node.hasAttribute && node.hasAttribute("class")) {
      // Only the classes marked writes for code languages survive (highlight.js adds its own afterwards).
      const kept = node.getAttribute("class").split(/\s+/).filter((c) => /^language-[\w+#-]+$/.test(c));
      if (kept.length) node.setAttribute("class", kept.join(" ")); else node.removeAttribute("class");
    }
  });
  if (window.hljs) window.hljs.configure({ ignoreUnescapedHTML: true, throwUnescapedHTML: false });

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      return ok;
    }
  }

  function copyButton(label, getText) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = label;
    button.addEventListener("click", async () => {
      const ok = await copyText(getText());
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
    return button;
  }

  // Code blocks get highlighting, a language caption and a copy button; tables scroll inside their own box.
  function enhance(root) {
    root.querySelectorAll("pre > code").forEach((code) => {
      const pre = code.parentElement;
      const match = (code.getAttribute("class") || "").match(/language-([\w+#-]+)/);
      if (window.hljs) {
        if (match && !window.hljs.getLanguage(match[1])) code.classList.add("nohighlight");
        else window.hljs.highlightElement(code);
      }
      const bar = document.createElement("div");
      bar.className = "code-bar";
      const lang = document.createElement("span");
      lang.textContent = match ? match[1] : "text";
      bar.appendChild(lang);
      bar.appendChild(copyButton("Copy code", () => code.textContent));
      pre.before(bar);
      const box = document.createElement("div");
      box.className = "code-block";
      bar.before(box);
      box.appendChild(bar);
      box.appendChild(pre);
      pre.tabIndex = 0;  // scrollable regions must be reachable by keyboard
    });
    root.querySelectorAll("table").forEach((table) => {
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      wrap.tabIndex = 0;
      table.before(wrap);
      wrap.appendChild(table);
    });
  }

  function render(target, text) {
    const fragment = window.DOMPurify.sanitize(parser.parse(text || ""), PURIFY);
    enhance(fragment);
    target.replaceChildren(fragment);
  }

  // Every answer already on the page (its raw text, escaped by the template) is rendered the same way.
  function renderAll(root) {
    (root || document).querySelectorAll(".message .body.markdown").forEach((body) => {
      const article = body.closest(".message");
      if (article.dataset.rendered) return;
      article.dataset.rendered = "1";
      const text = body.textContent;
      article.atriumText = text;
      render(body, text);
    });
    (root || document).querySelectorAll(".message .body.plain").forEach((body) => {
      body.closest(".message").atriumText = body.textContent;
    });
  }

  window.AtriumMarkdown = { render, renderAll, copyText, copyButton };
  renderAll(document);
})();
