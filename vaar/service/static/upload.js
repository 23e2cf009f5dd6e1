// The upload page: send the form, poll the job, link the report. No inline script (the page's
// Content-Security-Policy allows only this file).
"use strict";

const form = document.getElementById("upload");
const status = document.getElementById("status");

function show(text, isError) {
  status.replaceChildren();
  const p = document.createElement("p");
  p.textContent = text;
  if (isError) p.className = "error";
  status.append(p);
  return p;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch (e) {
    return response.statusText;
  }
}

async function login(token) {
  if (!token) return true;
  const response = await fetch("/api/session", { method: "POST", body: new URLSearchParams({ token }) });
  if (!response.ok) show("token: " + (await errorText(response)), true);
  return response.ok;
}

async function poll(url) {
  for (;;) {
    const response = await fetch(url);
    if (!response.ok) return show(await errorText(response), true);
    const job = await response.json();
    if (job.status === "done") {
      const p = show("Done. ");
      for (const [name, href] of Object.entries(job.links)) {
        if (name === "self") continue;
        const a = document.createElement("a");
        a.href = href;
        a.textContent = name;
        a.target = "_blank";
        a.rel = "noopener";
        p.append(a, " ");
      }
      return;
    }
    if (job.status === "failed" || job.status === "cancelled") {
      return show(job.status + ": " + (job.error || ""), true);
    }
    show(job.status + " — " + (job.stage || "") + " (" + Math.round(job.progress * 100) + "%)");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const token = data.get("token");
  data.delete("token");
  if (!data.get("model")) data.delete("model");
  const study = data.get("study");
  if (!study || !study.size) data.delete("study");
  if (!(await login(token))) return;
  show("uploading ...");
  const response = await fetch("/api/analyses", { method: "POST", body: data });
  if (response.status !== 202) return show(await errorText(response), true);
  const job = await response.json();
  await poll(job.links.self);
});
