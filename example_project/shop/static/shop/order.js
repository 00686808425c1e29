// The order page follows its checkout run through the HTTP API, with the token it was
// rendered with: the "steps" stream over EventSource, the "progress" value long-polled,
// the approval sent as a message, and the run read once it has finished. Data from the
// server goes into the page with textContent only, never as HTML.
"use strict";

const follow = JSON.parse(document.getElementById("follow").textContent);
const byId = (id) => document.getElementById(id);
const ACTIVE = ["pending", "running", "waiting"];
const EXPIRED = "This page's access to your order has run out. Reload the page to carry on.";
let stopped = false;

class Problem extends Error {}

// Every request carries the token as a Bearer header; a refused token is a 401.
async function call(url, options = {}) {
  const headers = { Authorization: `Bearer ${follow.token}`, ...options.headers };
  let response;
  try {
    response = await fetch(url, { ...options, headers });
  } catch {
    throw new Problem("The shop cannot be reached. Check your connection and reload the page.");
  }
  if (response.status === 401) throw new Problem(EXPIRED);
  return response;
}

function failure(response) {
  return new Problem(`The shop answered with an error (${response.status}). Reload the page.`);
}

function showProblem(error) {
  stopped = true;
  steps.close();
  byId("approve").disabled = true;
  byId("problem-text").textContent =
    error instanceof Problem ? error.message : "Something broke on this page. Reload it.";
  byId("problem").hidden = false;
}

function showProgress(progress) {
  const percent = progress.percent ?? 0;
  byId("progress-bar").value = percent;
  byId("progress-percent").textContent = `${Math.round(percent)}%`;
  byId("progress-message").textContent = progress.message;
}

// A stream item is a step's new state: the first one adds the step, the next ones update it.
function showStep(item) {
  const list = byId("steps");
  let line = [...list.children].find((li) => li.dataset.step === item.step);
  if (!line) {
    line = list.appendChild(document.createElement("li"));
    line.dataset.step = item.step;
  }
  line.className = `step ${item.state}`;
  line.textContent = item.label;
  if (item.step !== "approval") return;
  byId("approval").hidden = item.state !== "waiting";
  if (item.until) {
    const time = new Date(item.until).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
    byId("approval-deadline").textContent =
      `Approve by ${time}, or the order is cancelled and your items go back on the shelf.`;
  }
}

// Worded as the server words a finished order (views.outcome).
function showOutcome(run) {
  let kind = "failed";
  let title = "Something went wrong";
  let text = "We could not complete your order. Please contact the shop.";
  if (run.status === "completed" && run.result.outcome === "shipped") {
    [kind, title, text] = ["shipped", "Your order is on its way", `Tracking number: ${run.result.tracking}`];
  } else if (run.status === "completed") {
    [kind, title] = ["cancelled", "Order cancelled"];
    text = `The order was ${run.result.reason}. The hold on your card was released.`;
  } else if (run.status === "cancelled") {
    [kind, title, text] = ["cancelled", "Order cancelled", "The shop cancelled it."];
  }
  byId("approval").hidden = true;
  byId("progress-bar").classList.toggle("stopped", kind !== "shipped");
  byId("outcome").className = `outcome ${kind}`;
  byId("outcome-title").textContent = title;
  byId("outcome-text").textContent = text;
  byId("outcome").hidden = false;
}

async function readRun() {
  const response = await call(follow.run);
  if (!response.ok) throw failure(response);
  return response.json();
}

// Ask for a version newer than the one shown; the answer says whether the run goes on.
async function followProgress() {
  let version = null;
  while (!stopped) {
    const after = version === null ? "" : `&after=${version}`;
    const response = await call(`${follow.progress}?timeout=25${after}`);
    let status;
    if (response.ok) {
      const body = await response.json();
      if (body.version !== version) showProgress(body.value);
      [version, status] = [body.version, body.run_status];
    } else if (response.status === 404) {
      status = (await readRun()).status; // no progress yet: has the run ended without any?
    } else {
      throw failure(response);
    }
    if (!ACTIVE.includes(status)) return showOutcome(await readRun());
  }
}

// EventSource cannot set headers: the token goes in the query string (streams only).
const steps = new EventSource(`${follow.steps}?token=${encodeURIComponent(follow.token)}`);
steps.onmessage = (event) => showStep(JSON.parse(event.data));
steps.addEventListener("close", () => steps.close());
steps.addEventListener("end", () => steps.close());
// After a dropped connection the browser reconnects by itself, with Last-Event-ID, so no
// step is shown twice. It gives up only on an answer that is not a stream, such as the 401
// of an expired token: ask the API why.
steps.onerror = () => {
  if (steps.readyState !== EventSource.CLOSED || stopped) return;
  readRun()
    .then(() => {
      throw new Problem("The live list of steps stopped. Reload the page to see it again.");
    })
    .catch(showProblem);
};

byId("reload").addEventListener("click", () => window.location.reload());

byId("approve").addEventListener("click", async () => {
  const button = byId("approve");
  button.disabled = true;
  button.textContent = "Approving…";
  try {
    const response = await call(follow.messages, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      // One approval per run, however often the button is pressed.
      body: JSON.stringify({ topic: "approval", message: { approved: true }, idempotency_key: "approve" }),
    });
    if (!response.ok) throw failure(response);
    button.textContent = "Approved";
  } catch (error) {
    button.textContent = "Approve";
    showProblem(error);
  }
});

followProgress().catch(showProblem);
