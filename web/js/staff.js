// Staff: the agenda of a location and day, desks as columns, updated live (SSE), with the
// counter's actions (check in, no-show, complete, cancel with a reason) and a print view.

import { api, getLocations, getProducts, session, streamEvents } from "./api.js";
import { requireSession, whoAmI } from "./auth.js";
import { announce, clear, h } from "./dom.js";
import { brusselsDay, formatDay, formatTime, localized, t } from "./i18n.js";

// The booking service's default (checkin_early_minutes): check-in opens 10 minutes before the start.
const CHECKIN_EARLY_MS = 10 * 60 * 1000;

export async function renderStaff(ctx) {
  const { main, query, navigate, onCleanup } = ctx;
  main.append(h("h1", {}, t("staff.title")));
  const area = h("div", { id: "staff" });
  main.append(area);
  requireSession(area, ["staff", "admin"], (saved) => agenda(area, saved, query, navigate, onCleanup));
}

async function agenda(area, saved, query, navigate, onCleanup) {
  const [allLocations, products] = await Promise.all([getLocations().catch(() => []), getProducts().catch(() => [])]);
  const mine = saved.locations.includes("*") ? allLocations : allLocations.filter((l) => saved.locations.includes(l.id));
  const choices = mine.length ? mine : saved.locations.map((id) => ({ id, name: id }));
  let locationId = choices.some((l) => l.id === query.get("location")) ? query.get("location") : choices[0]?.id;
  let day = /^\d{4}-\d{2}-\d{2}$/.test(query.get("date") || "") ? query.get("date") : brusselsDay();
  const messages = new Map(); // booking id -> refusal message, kept across redraws
  const openCancel = new Set();

  const locSelect = h(
    "select",
    { id: "agenda-location", name: "location" },
    choices.map((l) => h("option", { value: l.id, selected: l.id === locationId }, l.name)),
  );
  const dateInput = h("input", { type: "date", id: "agenda-date", name: "date", value: day });
  const live = h("span", { class: "live", id: "live-indicator", dataset: { on: "false" } }, t("staff.live_off"));
  const status = h("p", { class: "status-line", id: "agenda-status", role: "status", "aria-live": "polite" });
  const printTitle = h("p", { class: "print-only" });
  const grid = h("div", { class: "agenda", id: "agenda" });

  clear(
    area,
    whoAmI(saved, navigate),
    h(
      "form",
      {
        class: "toolbar",
        onsubmit: (e) => {
          e.preventDefault();
          const changedLocation = locSelect.value !== locationId;
          locationId = locSelect.value;
          day = dateInput.value || brusselsDay();
          history.replaceState(null, "", `/staff?location=${encodeURIComponent(locationId)}&date=${day}`);
          load();
          if (changedLocation) connect();
        },
      },
      h("div", { class: "field" }, h("label", { for: "agenda-location" }, t("staff.location")), locSelect),
      h("div", { class: "field" }, h("label", { for: "agenda-date" }, t("staff.date")), dateInput),
      h("button", { type: "submit", id: "agenda-show" }, t("staff.show")),
      h("button", { type: "button", class: "secondary", id: "agenda-previous", onclick: () => moveDay(-1) }, t("staff.previous_day")),
      h("button", { type: "button", class: "secondary", id: "agenda-next", onclick: () => moveDay(1) }, t("staff.next_day")),
      h("button", { type: "button", class: "secondary", id: "agenda-print", onclick: () => window.print() }, t("staff.print")),
      live,
    ),
    status,
    printTitle,
    h("p", { class: "hint no-print", id: "agenda-zone" }, t("staff.times_zone")),
    grid,
  );

  function moveDay(days) {
    const date = new Date(`${day}T12:00:00Z`);
    date.setUTCDate(date.getUTCDate() + days);
    day = date.toISOString().slice(0, 10);
    dateInput.value = day;
    history.replaceState(null, "", `/staff?location=${encodeURIComponent(locationId)}&date=${day}`);
    load();
  }

  const productName = (id) => localized(products.find((p) => p.id === id)?.name) || id;
  let token = saved.token;

  async function load() {
    const current = session();
    if (!current) {
      navigate("/staff", { replace: true });
      return;
    }
    token = current.token;
    try {
      const { body } = await api(`/api/v1/agenda/${encodeURIComponent(locationId)}?date=${day}`, { token });
      draw(body);
    } catch (exc) {
      clear(grid, h("p", { class: "notice error", role: "alert" }, t("common.error", { detail: exc.message })));
    }
  }

  function draw(data) {
    const locName = choices.find((l) => l.id === locationId)?.name || locationId;
    printTitle.textContent = `${locName} – ${formatDay(day)} · ${t("staff.times_zone")}`;
    clear(
      grid,
      data.desks.map((desk) =>
        h(
          "section",
          { class: "desk", "aria-labelledby": `desk-${desk.desk}` },
          h("h2", { id: `desk-${desk.desk}` }, t("staff.desk", { desk: desk.desk })),
          desk.appointments.length
            ? h(
                "ol",
                {},
                [...desk.appointments]
                  .sort((a, b) => a.start.localeCompare(b.start))
                  .map((a) => appointment(a)),
              )
            : h("p", { class: "hint" }, t("staff.empty")),
        ),
      ),
    );
  }

  function appointment(a) {
    const name = `${a.person?.given_name ?? ""} ${a.person?.family_name ?? ""}`.trim() || a.booking;
    const msgId = `msg-${a.booking}`;
    const actions = [];
    const act = (label, path, cls = "secondary") =>
      h(
        "button",
        { type: "button", class: `${cls} small`, dataset: { action: path }, "aria-describedby": msgId, onclick: () => run(a, name, path) },
        label,
      );
    // Offered only when the API would accept them: check-in from CHECKIN_EARLY_MS before the
    // start, no-show once the start has passed.
    const startsAt = new Date(a.start).getTime();
    if (a.status === "confirmed" && Date.now() >= startsAt - CHECKIN_EARLY_MS) actions.push(act(t("staff.checkin"), "check-in", ""));
    if (a.status === "confirmed" && Date.now() >= startsAt) actions.push(act(t("staff.noshow"), "no-show"));
    if (a.status === "checked_in") actions.push(act(t("staff.complete"), "complete", ""));
    if (["confirmed", "held", "requested"].includes(a.status)) {
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: "secondary small",
            dataset: { action: "cancel" },
            "aria-expanded": openCancel.has(a.booking) ? "true" : "false",
            "aria-controls": `cancel-${a.booking}`,
            onclick: () => {
              if (openCancel.has(a.booking)) openCancel.delete(a.booking);
              else openCancel.add(a.booking);
              load().then(() => document.getElementById(`reason-${a.booking}`)?.focus());
            },
          },
          t("staff.cancel"),
        ),
      );
    }
    const reasonId = `reason-${a.booking}`;
    const cancelForm =
      openCancel.has(a.booking) && actions.length
        ? h(
            "form",
            {
              id: `cancel-${a.booking}`,
              onsubmit: (e) => {
                e.preventDefault();
                const reason = document.getElementById(reasonId).value.trim();
                if (!reason) {
                  const input = document.getElementById(reasonId);
                  input.setAttribute("aria-invalid", "true");
                  input.focus();
                  return;
                }
                run(a, name, "cancel", { reason });
              },
            },
            h("label", { for: reasonId }, t("staff.reason")),
            h("span", { class: "hint", id: `${reasonId}-note` }, t("staff.reason_note")),
            h("input", { type: "text", id: reasonId, required: true, maxlength: 300, "aria-describedby": `${reasonId}-note` }),
            h("div", { class: "actions" }, h("button", { type: "submit", class: "danger small" }, t("staff.cancel_submit"))),
          )
        : null;
    return h(
      "li",
      { class: `appt ${a.status}`, id: `appt-${a.booking}`, dataset: { booking: a.booking, status: a.status } },
      h("span", { class: "when" }, `${formatTime(a.start)}–${formatTime(a.end)}`),
      " ",
      h("span", { class: `badge ${a.status}` }, t(`status.${a.status}`)),
      h("span", { class: "who" }, name),
      h("span", { class: "what" }, productName(a.product)),
      actions.length ? h("div", { class: "actions" }, actions) : null,
      cancelForm,
      h("p", { class: "appt-msg", id: msgId }, messages.get(a.booking) || ""),
    );
  }

  let lastMessageAt = 0;
  async function run(a, name, action, body) {
    lastMessageAt = Date.now();
    try {
      const { body: updated } = await api(`/api/v1/bookings/${encodeURIComponent(a.booking)}/${action}`, {
        method: "POST",
        token,
        body,
      });
      messages.delete(a.booking);
      openCancel.delete(a.booking);
      announce(status, t("staff.done", { name, status: t(`status.${updated.status}`) }), { kind: "ok" });
    } catch (exc) {
      const detail = exc.problem?.detail || exc.message;
      messages.set(a.booking, detail);
      announce(status, t("staff.refused", { name, detail }), { kind: "error" });
    }
    await load();
    const card = document.getElementById(`appt-${a.booking}`);
    (card?.querySelector("button") || card)?.focus?.();
  }

  // Live updates: the SSE stream read with fetch, so that it carries the Authorization header.
  let controller = null;
  let timer = null;
  function connect() {
    controller?.abort();
    controller = new AbortController();
    const here = locationId;
    streamEvents(`/api/v1/agenda/${encodeURIComponent(here)}/stream`, {
      token,
      signal: controller.signal,
      onState: (on) => {
        live.dataset.on = String(on);
        live.textContent = on ? t("staff.live") : t("staff.live_off");
        if (on) load(); // catch up on anything missed while disconnected
      },
      onEvent: (name) => {
        if (name !== "agenda-changed") return;
        clearTimeout(timer);
        timer = setTimeout(async () => {
          await load();
          if (Date.now() - lastMessageAt < 4000) return; // keep an action's outcome readable
          status.dataset.kind = "info";
          status.textContent = t("staff.updated", { time: formatTime(new Date().toISOString()) });
        }, 150);
      },
    });
  }
  onCleanup(() => {
    controller?.abort();
    clearTimeout(timer);
  });
  history.replaceState(null, "", `/staff?location=${encodeURIComponent(locationId)}&date=${day}`);
  await load();
  connect();
}
