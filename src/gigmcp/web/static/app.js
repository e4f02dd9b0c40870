// The dashboard's own script: only what HTML cannot do by itself. No inline script and
// no eval anywhere (the Content-Security-Policy forbids both); every page works without
// this file, which only adds copying to the clipboard.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.dataset.copied;
    if (label) {
      const before = button.textContent;
      button.textContent = label;
      setTimeout(() => { button.textContent = before; }, 2000);
    }
  });
});
