// Leave the waiting list, from the link in every waitlist e-mail:
// /waitlist/unsubscribe?id=<subscription id>&token=<token>. Asks first, then
// DELETE /api/v1/waitlist/{id}?token=... (204/200: done; 404: unknown or already removed).

import { api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

// Outcomes by subscription id, kept for the page's life so that a language switch (which
// re-renders the page) shows the outcome again instead of asking a second time.
const outcomes = new Map();

export async function renderWaitlistUnsubscribe(ctx) {
  const { main, query } = ctx;
  const id = (query.get("id") || "").trim();
  const token = (query.get("token") || "").trim();
  const heading = h("h1", {}, t("waitlist.title"));
  const body = h("div", { id: "unsubscribe" });
  const back = h("p", {}, h("a", { href: "/", "data-link": true, id: "book-link" }, t("waitlist.book")));
  main.append(heading, body, back);

  if (!id || !token) {
    body.append(h("p", { class: "notice error", id: "unsubscribe-result", dataset: { outcome: "bad-link" } }, t("waitlist.bad_link")));
    return;
  }
  if (outcomes.has(id)) {
    body.append(result(outcomes.get(id)));
    return;
  }

  const status = h("p", { class: "status-line", id: "unsubscribe-status", role: "status" });
  const button = h("button", { type: "button", class: "danger", id: "unsubscribe-button", onclick: unsubscribe }, t("waitlist.confirm"));
  const ask = h(
    "div",
    { class: "notice warn", id: "unsubscribe-ask" },
    h("p", {}, t("waitlist.intro")),
    h("p", {}, t("waitlist.question")),
    h("div", { class: "actions" }, button),
  );
  body.append(ask, status);

  async function unsubscribe() {
    button.disabled = true;
    status.dataset.kind = "info";
    status.textContent = t("waitlist.working");
    let outcome;
    try {
      const response = await api(`/api/v1/waitlist/${encodeURIComponent(id)}?token=${encodeURIComponent(token)}`, {
        method: "DELETE",
        accept: [404],
      });
      outcome = response.status === 404 ? "gone" : "done";
    } catch (exc) {
      // A malformed link (e.g. a mangled token) may be refused as invalid: nothing to remove.
      if (exc instanceof ApiError && (exc.status === 400 || exc.status === 422)) {
        outcome = "gone";
      } else {
        button.disabled = false;
        status.dataset.kind = "error";
        status.textContent = exc instanceof ApiError && exc.status === 0 ? t("common.offline") : t("common.error", { detail: exc.message });
        return;
      }
    }
    outcomes.set(id, outcome);
    const card = result(outcome);
    body.replaceChildren(card);
    card.focus();
  }
}

function result(outcome) {
  const ok = outcome === "done";
  return h(
    "p",
    { class: `notice ${ok ? "ok" : "warn"}`, id: "unsubscribe-result", tabindex: "-1", dataset: { outcome } },
    t(ok ? "waitlist.done" : "waitlist.gone"),
  );
}
