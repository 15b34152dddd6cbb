// Operations: consumer groups and their lag (polled every 2 s), dead letters with replay, the
// agenda projection rebuild, and an event tail filtered by booking or correlation id.
// The ops endpoints may be missing on an older server: each panel says so when it gets a 404.

import { api, ApiError, session } from "./api.js";
import { requireSession, whoAmI } from "./auth.js";
import { announce, clear, h } from "./dom.js";
import { formatDateTime, formatTime, t } from "./i18n.js";

const POLL_MS = 2000;

export async function renderOps(ctx) {
  const { main, query, navigate, onCleanup } = ctx;
  main.append(h("h1", {}, t("ops.title")));
  const area = h("div", { id: "ops" });
  main.append(area);
  requireSession(area, ["ops", "admin"], (saved) => consoleView(area, saved, query, navigate, onCleanup));
}

function unavailable(path) {
  return h("p", { class: "notice warn ops-unavailable" }, t("ops.not_available", { path }));
}

function failure(exc) {
  if (exc instanceof ApiError && exc.status === 404) return unavailable(exc.path.split("?")[0]);
  return h("p", { class: "notice error", role: "alert" }, t("common.error", { detail: exc.message }));
}

/** The list inside a response that may be a bare array or wrapped in an object. */
function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of keys) if (Array.isArray(body?.[key])) return body[key];
  return [];
}

const pick = (obj, ...keys) => keys.map((k) => obj?.[k]).find((v) => v !== undefined && v !== null);

function consoleView(area, saved, query, navigate, onCleanup) {
  const token = () => session()?.token || saved.token;
  const status = h("p", { class: "status-line", id: "ops-status", role: "status", "aria-live": "polite" });

  // --- consumers ----------------------------------------------------------------------------
  const consumersBody = h("div", { id: "consumers" }, h("p", {}, t("common.loading")));
  const consumersUpdated = h("p", { class: "hint", id: "consumers-updated" });
  const consumersPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "consumers-title" },
    h("h2", { id: "consumers-title" }, t("ops.consumers")),
    consumersUpdated,
    consumersBody,
  );

  function drawConsumers(body) {
    const groups = listOf(body, "groups", "consumers", "items");
    const rows = [];
    let total = 0;
    for (const g of groups) {
      const group = pick(g, "group", "group_id", "consumer_group", "name") ?? "?";
      const partitions = listOf(g.partitions ?? [], "partitions");
      if (!partitions.length) {
        const lag = Number(pick(g, "lag", "total_lag") ?? 0);
        total += lag;
        rows.push({ group, topic: pick(g, "topic") ?? (g.topics || []).join?.(", ") ?? "", partition: "", committed: pick(g, "committed", "offset"), end: pick(g, "end", "end_offset", "high_watermark"), lag, service: g.service });
      }
      for (const p of partitions) {
        const lag = Number(pick(p, "lag") ?? 0);
        total += lag;
        rows.push({
          group,
          service: g.service,
          topic: pick(p, "topic") ?? pick(g, "topic") ?? "",
          partition: pick(p, "partition") ?? "",
          committed: pick(p, "committed", "offset", "committed_offset", "position"),
          end: pick(p, "end", "end_offset", "high_watermark", "log_end_offset", "latest"),
          lag,
        });
      }
    }
    consumersUpdated.dataset.polls = String(Number(consumersUpdated.dataset.polls || 0) + 1);
    consumersUpdated.textContent = `${t("ops.updated", { time: formatTime(new Date().toISOString()) })} · ${t("ops.total_lag", { n: total })}`;
    if (!rows.length) {
      clear(consumersBody, h("p", {}, "–"));
      return;
    }
    clear(
      consumersBody,
      h(
        "div",
        { class: "table-scroll" },
        h(
          "table",
          { id: "consumers-table" },
          h("caption", { class: "visually-hidden" }, t("ops.consumers")),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, t("ops.group")),
              h("th", { scope: "col" }, t("ops.topic")),
              h("th", { scope: "col", class: "num" }, t("ops.partition")),
              h("th", { scope: "col", class: "num" }, t("ops.committed")),
              h("th", { scope: "col", class: "num" }, t("ops.end")),
              h("th", { scope: "col", class: "num" }, t("ops.lag")),
            ),
          ),
          h(
            "tbody",
            {},
            rows.map((r) =>
              h(
                "tr",
                { class: r.lag > 0 ? "lagging" : "", dataset: { group: r.group } },
                h("th", { scope: "row" }, r.service ? `${r.group} (${r.service})` : r.group),
                h("td", {}, r.topic),
                h("td", { class: "num" }, r.partition),
                h("td", { class: "num" }, r.committed ?? "–"),
                h("td", { class: "num" }, r.end ?? "–"),
                h("td", { class: "num lag" }, r.lag),
              ),
            ),
          ),
        ),
      ),
    );
  }

  let consumersGone = false;
  async function pollConsumers() {
    if (consumersGone) return;
    try {
      const { body } = await api("/api/v1/ops/consumers", { token: token() });
      drawConsumers(body);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 404) consumersGone = true;
      clear(consumersBody, failure(exc));
    }
  }

  // --- dead letters -------------------------------------------------------------------------
  const deadBody = h("div", { id: "dead-letters" }, h("p", {}, t("common.loading")));
  const deadPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "dead-title" },
    h("h2", { id: "dead-title" }, t("ops.dead_letters")),
    deadBody,
  );

  async function loadDeadLetters() {
    try {
      const { body } = await api("/api/v1/ops/dead-letters", { token: token() });
      const letters = listOf(body, "dead_letters", "items", "letters");
      if (!letters.length) {
        clear(deadBody, h("p", { id: "no-dead-letters" }, t("ops.no_dead_letters")));
        return;
      }
      clear(
        deadBody,
        h(
          "div",
          { class: "table-scroll" },
          h(
            "table",
            { id: "dead-letters-table" },
            h("caption", { class: "visually-hidden" }, t("ops.dead_letters")),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, "Id"),
                h("th", { scope: "col" }, t("ops.origin")),
                h("th", { scope: "col" }, t("ops.error")),
                h("th", { scope: "col" }, `${t("ops.created")} (${t("common.brussels_time")})`),
                h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, t("ops.replay"))),
              ),
            ),
            h(
              "tbody",
              {},
              letters.map((d) => {
                const id = pick(d, "id", "dead_letter_id");
                const replayed = pick(d, "replayed_at");
                const group = pick(d, "consumer_group", "group") ?? "";
                const origin = [group, d.event_type ?? "", `${d.topic ?? ""}[${d.partition ?? ""}]@${d.offset ?? ""}`, d.key ? `key ${d.key}` : ""]
                  .filter(Boolean)
                  .join(" ");
                return h(
                  "tr",
                  { dataset: { id } },
                  h("td", { class: "mono" }, id),
                  h("td", { class: "mono" }, origin),
                  h(
                    "td",
                    {},
                    h("span", { class: "mono" }, String(pick(d, "error", "reason") ?? "")),
                    d.body !== undefined || d.headers
                      ? h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify({ headers: d.headers, body: d.body }, null, 2)))
                      : null,
                  ),
                  h("td", {}, formatDateTime(pick(d, "dead_lettered_at", "created_at"), { zone: false })),
                  h(
                    "td",
                    {},
                    replayed
                      ? h("span", { class: "badge completed" }, t("ops.replayed"))
                      : h(
                          "button",
                          {
                            type: "button",
                            class: "small replay",
                            "aria-label": `${t("ops.replay")} ${id}`,
                            onclick: (e) => replay(id, e.currentTarget),
                          },
                          t("ops.replay"),
                        ),
                  ),
                );
              }),
            ),
          ),
        ),
      );
    } catch (exc) {
      clear(deadBody, failure(exc));
    }
  }

  async function replay(id, button) {
    button.disabled = true;
    try {
      await api(`/api/v1/ops/dead-letters/${encodeURIComponent(id)}/replay`, { method: "POST", token: token() });
      announce(status, t("ops.replay_done", { id }), { kind: "ok" });
    } catch (exc) {
      announce(status, exc.status === 404 ? t("ops.not_available", { path: exc.path }) : t("common.error", { detail: exc.message }), { kind: "error" });
      button.disabled = false;
    }
    await loadDeadLetters();
  }

  // --- projections --------------------------------------------------------------------------
  const rebuildButton = h("button", { type: "button", class: "secondary", id: "rebuild-agenda" }, t("ops.rebuild"));
  rebuildButton.addEventListener("click", async () => {
    rebuildButton.disabled = true;
    try {
      await api("/api/v1/ops/projections/agenda/rebuild", { method: "POST", token: token() });
      announce(status, t("ops.rebuild_done"), { kind: "ok" });
    } catch (exc) {
      announce(status, exc.status === 404 ? t("ops.not_available", { path: exc.path }) : t("common.error", { detail: exc.message }), { kind: "error" });
    } finally {
      rebuildButton.disabled = false;
    }
  });
  const projectionsPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "projections-title" },
    h("h2", { id: "projections-title" }, t("ops.projections")),
    rebuildButton,
  );

  // --- event tail -----------------------------------------------------------------------------
  const filterKind = h(
    "select",
    { id: "events-kind" },
    h("option", { value: "booking" }, t("ops.filter_booking")),
    h("option", { value: "correlation" }, t("ops.filter_correlation")),
  );
  const filterValue = h("input", { type: "text", id: "events-id", value: query.get("booking") || query.get("correlation") || "", spellcheck: "false" });
  if (query.get("correlation")) filterKind.value = "correlation";
  const follow = h("input", { type: "checkbox", id: "events-follow" });
  const eventsBody = h("div", { id: "events" });
  const eventsPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "events-title" },
    h("h2", { id: "events-title" }, t("ops.events")),
    h(
      "form",
      {
        class: "toolbar",
        onsubmit: (e) => {
          e.preventDefault();
          loadEvents();
        },
      },
      h("div", { class: "field" }, h("label", { for: "events-kind" }, t("ops.filter")), filterKind),
      h("div", { class: "field" }, h("label", { for: "events-id" }, t("ops.filter_value")), filterValue),
      h("button", { type: "submit", id: "events-show" }, t("staff.show")),
      h("div", { class: "field" }, h("label", { for: "events-follow", style: "display:inline" }, follow, " ", t("ops.follow"))),
    ),
    eventsBody,
  );

  async function loadEvents() {
    const value = filterValue.value.trim();
    if (!value) return;
    const path = `/api/v1/ops/events?${filterKind.value}=${encodeURIComponent(value)}`;
    try {
      const { body } = await api(path, { token: token() });
      window.__lastEvents = body;
      const events = listOf(body, "events", "items");
      if (!events.length) {
        clear(eventsBody, h("p", {}, t("ops.no_events")));
        return;
      }
      clear(
        eventsBody,
        h(
          "div",
          { class: "table-scroll" },
          h(
            "table",
            { id: "events-table" },
            h("caption", { class: "visually-hidden" }, t("ops.events")),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, `${t("ops.time")} (${t("common.brussels_time")})`),
                h("th", { scope: "col" }, t("ops.type")),
                h("th", { scope: "col" }, t("ops.source")),
                h("th", { scope: "col" }, t("ops.topic")),
                h("th", { scope: "col" }, "Data"),
              ),
            ),
            h(
              "tbody",
              {},
              events.map((ev) =>
                h(
                  "tr",
                  {},
                  h("td", {}, formatDateTime(pick(ev, "time", "at", "occurred_at", "recorded_at"), { zone: false })),
                  h("td", { class: "mono" }, pick(ev, "type", "event") ?? ""),
                  h("td", { class: "mono" }, pick(ev, "source", "service") ?? ""),
                  h("td", { class: "mono" }, ev.topic ? `${ev.topic}[${ev.partition ?? ""}]@${ev.offset ?? ""}` : ""),
                  h("td", {}, h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(ev, null, 2)))),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (exc) {
      clear(eventsBody, failure(exc));
    }
  }

  clear(area, whoAmI(saved, navigate), status, consumersPanel, deadPanel, projectionsPanel, eventsPanel);

  pollConsumers();
  loadDeadLetters();
  if (filterValue.value) loadEvents();
  const timer = setInterval(() => {
    pollConsumers();
    if (follow.checked) loadEvents();
  }, POLL_MS);
  onCleanup(() => clearInterval(timer));
}
