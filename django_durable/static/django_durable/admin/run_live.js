// A run's admin page while the run is not finished: the summary, the progress bar and the
// timeline are read again every two seconds (server-rendered, escaped HTML); once the run
// has finished, the page reloads once to show its outcome and the buttons that apply.
(function () {
  "use strict";
  const panel = document.getElementById("durable-run-panel");
  if (!panel || panel.dataset.finished === "1") return;
  const parts = ["summary", "progress", "timeline"];
  let failures = 0;

  async function refresh() {
    try {
      const response = await fetch(panel.dataset.liveUrl, {
        headers: {Accept: "application/json"},
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(String(response.status));
      const data = await response.json();
      for (const part of parts) {
        const element = document.getElementById("durable-" + part);
        if (!element || typeof data[part] !== "string") continue;
        // Keep the timeline's text list open if the reader opened it.
        const opened = Array.from(element.querySelectorAll("details"), (item) => item.open);
        element.innerHTML = data[part];
        element.querySelectorAll("details").forEach((item, index) => {
          item.open = Boolean(opened[index]);
        });
      }
      if (data.finished) {
        window.location.reload();
        return;
      }
      failures = 0;
    } catch (error) {
      failures += 1;  // the server is restarting, or the session ended: slow down
    }
    setTimeout(refresh, Math.min(2000 * 2 ** failures, 30000));
  }

  setTimeout(refresh, 2000);
})();
