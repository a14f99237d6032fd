// mapreg console: the stage picker, the AWS console's toggles, confirmations and live updates.
// Plain JavaScript, no build step; every page works without it except the live updates.
"use strict";

function stagesByApi() {
  const el = document.getElementById("stages");
  if (!el) return {};
  try { return JSON.parse(el.textContent); } catch (e) { return {}; }
}

// An API picker refills the stage picker of its form with that API's stages.
function bindPickers(root) {
  const stages = stagesByApi();
  root.querySelectorAll("select[data-stage-picker]").forEach((api) => {
    api.addEventListener("change", () => {
      const stage = api.form.querySelector("select[name=stage]");
      if (!stage) return;
      stage.replaceChildren();
      (stages[api.value] || []).forEach((name) => {
        const o = document.createElement("option");
        o.value = name;
        o.textContent = name;
        stage.appendChild(o);
      });
    });
  });
}

// "Configure API mappings" and "Add new mapping" show their section.
function bindToggles(root) {
  root.querySelectorAll("[data-toggle]").forEach((b) => {
    b.addEventListener("click", () => {
      const target = document.getElementById(b.dataset.toggle);
      if (target) target.hidden = false;
    });
  });
  root.querySelectorAll("form[data-confirm]").forEach((f) => {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  });
}

// A domain's mappings table follows the change feed (Server-Sent Events).
function follow() {
  const live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) return;
  const source = new EventSource(live.dataset.live);
  source.addEventListener("mappings", (e) => {
    live.innerHTML = e.data;
    live.dataset.updated = e.lastEventId;
  });
  source.addEventListener("open", () => { live.dataset.following = "true"; });
}

document.addEventListener("DOMContentLoaded", () => {
  bindPickers(document);
  bindToggles(document);
  follow();
});
