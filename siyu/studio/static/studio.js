// The journey studio's editor: each change is checked on the studio's own server ~300 ms
// after the last keystroke, and the parts of the page the server renders again (status,
// problems, the marked source, picture, figures, previews, diff) replace the ones shown.
// Save sends the text as typed with the hash of what the page loaded. Plain JavaScript,
// no build step; it talks only to the page's own origin (CSP connect-src 'self').
"use strict";

(function () {
  const editor = document.getElementById("editor");
  if (!editor) {
    return;
  }
  const token = document.querySelector('meta[name="siyu-token"]').content;
  const data = document.body.dataset;
  const PARTS = ["status", "problems", "source", "picture", "steps", "previews", "diff"];
  const DEBOUNCE_MS = 300;
  let timer = null;
  let sent = 0;
  let shown = 0;

  function post(action, body) {
    return fetch("/journeys/" + encodeURIComponent(data.key) + "/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Siyu-Token": token },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  }

  // Each part is one element with its id; null: the text does not parse into a journey,
  // and the last one shown stays, dimmed.
  function swap(parts) {
    for (const id of PARTS) {
      const old = document.getElementById(id);
      if (!old || !(id in parts)) {
        continue;
      }
      if (parts[id] === null) {
        old.classList.add("stale");
        continue;
      }
      const holder = document.createElement("template");
      holder.innerHTML = parts[id];
      const scrolled = old.scrollTop;
      old.replaceWith(holder.content);
      const fresh = document.getElementById(id);
      if (fresh) {
        fresh.scrollTop = scrolled; // the marked source stays where the marketer was
      }
    }
    showFirstProblem();
  }

  // The first problem's line in view in the marked source (when it is not already).
  function showFirstProblem() {
    const source = document.getElementById("source");
    const line = source && source.querySelector(".line.problem");
    if (!line) {
      return;
    }
    const top = line.offsetTop - source.offsetTop;
    if (top < source.scrollTop || top > source.scrollTop + source.clientHeight - 40) {
      source.scrollTop = Math.max(0, top - source.clientHeight / 3);
    }
  }

  async function check() {
    const number = ++sent;
    document.getElementById("checking").textContent = data.checking;
    try {
      const response = await post("check", { text: editor.value, lang: data.lang });
      if (!response.ok) {
        return; // refused (a reloaded studio has a new token): saving says why
      }
      const answer = await response.json();
      if (number <= shown) {
        return; // a later check's answer is already shown
      }
      shown = number;
      if (answer.parts) {
        swap(answer.parts);
      }
    } finally {
      if (number === sent) {
        document.getElementById("checking").textContent = "";
      }
    }
  }

  editor.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, DEBOUNCE_MS);
  });

  async function save() {
    const result = document.getElementById("save-result");
    if (!result || editor.readOnly) {
      return;
    }
    result.textContent = data.saving;
    result.className = "muted";
    const response = await post("save", {
      text: editor.value,
      loaded: editor.dataset.loaded,
      lang: data.lang,
    });
    let answer;
    try {
      answer = await response.json();
    } catch (error) {
      answer = { ok: false, message: response.status + " " + response.statusText };
    }
    result.textContent = answer.message;
    result.className = answer.ok ? "ok" : "bad";
    if (answer.ok) {
      editor.dataset.loaded = answer.loaded;
    }
    if (answer.parts) {
      shown = ++sent; // newer than any check still on its way
      swap(answer.parts);
    }
  }

  const button = document.getElementById("save");
  if (button) {
    button.addEventListener("click", save);
  }
  showFirstProblem();
  editor.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") {
      event.preventDefault();
      save();
    }
  });

  // The backtest replays the editor's text (the server compares it with the saved file).
  const backtest = document.getElementById("backtest");
  if (backtest) {
    backtest.addEventListener("submit", function () {
      document.getElementById("backtest-text").value = editor.value;
    });
  }

  // A problem in the list: select its line in the editor.
  document.addEventListener("click", function (event) {
    const item = event.target.closest("#problems li[data-line]");
    if (!item) {
      return;
    }
    const lines = editor.value.split("\n");
    const line = Math.min(Number(item.dataset.line), lines.length);
    let start = 0;
    for (let i = 0; i < line - 1; i++) {
      start += lines[i].length + 1;
    }
    editor.focus();
    editor.setSelectionRange(start, start + lines[line - 1].length);
  });
})();
