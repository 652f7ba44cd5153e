// Copy buttons for one-time secrets and keys: each element marked data-copy gets a button
// that puts the text of its <code> on the clipboard. Without JavaScript the text is there
// to select.
"use strict";
(function () {
  if (!navigator.clipboard) return;  // only secure contexts (https, localhost) have it
  for (const holder of document.querySelectorAll("[data-copy]")) {
    const source = holder.querySelector("code");
    if (!source) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary small copy";
    button.textContent = "Copy";
    button.addEventListener("click", async function () {
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch (err) {
        button.textContent = "Select and copy";
      }
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    });
    holder.append(button);
  }
})();
