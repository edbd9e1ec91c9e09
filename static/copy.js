// Copy buttons outside the chat: <button data-copy-target="id-of-the-element-whose-text-to-copy">.
(function () {
  "use strict";
  document.querySelectorAll("button[data-copy-target]").forEach((button) => {
    const label = button.textContent;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copyTarget).textContent;
      let ok = true;
      try { await navigator.clipboard.writeText(text); } catch (e) { ok = false; }
      button.textContent = ok ? "Copied" : "Select the key and copy it";
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  });
})();
