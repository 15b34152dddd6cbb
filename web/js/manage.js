// The manage page from the e-mail link: /manage/{id}?token=...[&confirm=1]

import { api, ApiError, getLocations, getProducts } from "./api.js";
import { announce, clear, h } from "./dom.js";
import { brusselsDay, formatDateTime, formatDay, formatTime, localized, t } from "./i18n.js";

// The history in words: each event of the booking as the resident would say it. The city's reason
// is shown where the city cancelled or withdrew the time (the resident's own cancellation needs none).
function historyWords(entry) {
  const key = `history.${entry.event}`;
  const words = t(key, { to: entry.to ? formatDateTime(entry.to, { zone: false }) : "" });
  const what = words === key ? t("history.other") : words;
  const byTheCity = entry.event === "reservation-withdrawn" || (entry.event === "booking-cancelled" && entry.by === "staff");
  const said = byTheCity && entry.reason ? t("history.with_reason", { what, reason: entry.reason }) : what;
  return entry.at ? t("history.entry", { at: formatDateTime(entry.at, { zone: false }), what: said }) : said;
}

export async function renderManage(ctx) {
  const { main, params, query } = ctx;
  const id = decodeURIComponent(params[0]);
  const token = query.get("token") || "";
  const heading = h("h1", {}, t("manage.title"));
  const status = h("p", { class: "status-line", id: "manage-status", role: "status", "aria-live": "polite" });
  const body = h("div", { id: "manage" }, h("p", {}, t("common.loading")));
  main.append(heading, status, body);

  const auth = { token };
  const path = `/api/v1/bookings/${encodeURIComponent(id)}`;
  let products = [];
  let locations = [];
  try {
    [products, locations] = await Promise.all([getProducts(), getLocations()]);
  } catch {
    /* names fall back to ids */
  }

  async function load() {
    try {
      const { body: booking } = await api(path, auth);
      draw(booking);
      return booking;
    } catch (exc) {
      const message = exc instanceof ApiError && exc.status === 404 ? t("manage.not_found") : t("common.error", { detail: exc.message });
      clear(body, h("p", { class: "notice error", role: "alert" }, message));
      return null;
    }
  }

  function draw(booking) {
    const product = products.find((p) => p.id === booking.product);
    const location = locations.find((l) => l.id === booking.location);
    const active = ["requested", "held", "confirmed"].includes(booking.status);
    const actions = h("div", { class: "actions" });
    // A held booking can be confirmed here, whether or not the link was the e-mail's confirm link.
    if (booking.status === "held") {
      actions.append(h("button", { type: "button", id: "confirm-button", onclick: confirm }, t("manage.confirm")));
    }
    if (booking.start && booking.status !== "rejected") {
      actions.append(
        h(
          "a",
          {
            class: "button secondary",
            id: "ics-link",
            href: `${path}/calendar.ics?token=${encodeURIComponent(token)}`,
            download: `loket-${booking.id}.ics`,
          },
          t("book.add_calendar"),
        ),
      );
    }
    if (active && booking.status !== "requested") {
      actions.append(
        h("button", { type: "button", class: "secondary", id: "reschedule-button", "aria-expanded": "false", "aria-controls": "reschedule", onclick: openReschedule }, t("manage.reschedule")),
        h("button", { type: "button", class: "danger", id: "cancel-button", "aria-expanded": "false", "aria-controls": "cancel-confirm", onclick: askCancel }, t("manage.cancel")),
      );
    }
    clear(
      body,
      h(
        "dl",
        { class: "facts" },
        booking.reference ? [h("dt", {}, t("manage.reference")), h("dd", {}, h("strong", { id: "booking-reference", class: "reference" }, booking.reference))] : null,
        h("dt", {}, t("manage.status")),
        h("dd", {}, h("span", { class: `badge ${booking.status}`, id: "booking-status", dataset: { status: booking.status } }, t(`status.${booking.status}`))),
        h("dt", {}, t("manage.product")),
        h("dd", {}, product ? localized(product.name) : booking.product),
        h("dt", {}, t("manage.location")),
        h("dd", {}, location ? `${location.name}, ${location.address}` : booking.location),
        h("dt", {}, t("manage.when")),
        h("dd", { id: "booking-when" }, formatDateTime(booking.start, { end: booking.end })),
        h("dt", {}, t("manage.name")),
        h("dd", {}, `${booking.person?.given_name ?? ""} ${booking.person?.family_name ?? ""}`),
      ),
      booking.status === "held" && booking.hold_expires_at
        ? h("p", { class: "notice warn", id: "hold-deadline" }, t("manage.hold_deadline", { expires: formatDateTime(booking.hold_expires_at) }))
        : null,
      product && active ? h("p", {}, `${t("book.bring")}: ${(product.documents || []).map(localized).join(", ")}`) : null,
      actions,
      h("div", { id: "cancel-confirm", hidden: true }),
      h("div", { id: "reschedule", hidden: true }),
      h(
        "details",
        {},
        h("summary", {}, t("manage.history")),
        h(
          "ol",
          {},
          (booking.history || []).map((entry) => h("li", {}, historyWords(entry))),
        ),
      ),
    );

    async function confirm() {
      try {
        const { body: updated } = await api(`${path}/confirm`, { method: "POST", ...auth });
        draw(updated);
        announce(status, t("manage.confirmed_now"), { kind: "ok" });
      } catch (exc) {
        announce(status, t("common.error", { detail: exc.message }), { kind: "error" });
      }
    }

    function askCancel(event) {
      const box = body.querySelector("#cancel-confirm");
      event.currentTarget.setAttribute("aria-expanded", "true");
      const yes = h("button", { type: "button", class: "danger", id: "cancel-yes", onclick: doCancel }, t("manage.cancel_yes"));
      clear(
        box,
        h(
          "div",
          { class: "notice warn" },
          h("p", {}, t("manage.cancel_confirm")),
          h(
            "div",
            { class: "actions" },
            yes,
            h(
              "button",
              {
                type: "button",
                class: "secondary",
                onclick: () => {
                  box.hidden = true;
                  body.querySelector("#cancel-button")?.setAttribute("aria-expanded", "false");
                  body.querySelector("#cancel-button")?.focus();
                },
              },
              t("manage.cancel_no"),
            ),
          ),
        ),
      );
      box.hidden = false;
      yes.focus();
    }

    async function doCancel() {
      try {
        const { body: updated } = await api(`${path}/cancel`, { method: "POST", ...auth });
        draw(updated);
        announce(status, t("manage.cancelled_now"), { kind: "ok" });
        status.focus?.();
      } catch (exc) {
        announce(status, t("common.error", { detail: exc.message }), { kind: "error" });
      }
    }

    async function openReschedule(event) {
      const box = body.querySelector("#reschedule");
      event.currentTarget.setAttribute("aria-expanded", "true");
      box.hidden = false;
      clear(box, h("p", { role: "status" }, t("common.loading")));
      const from = brusselsDay();
      const to = brusselsDay(Date.now() + 60 * 86400000);
      let slots = [];
      try {
        const { body: avail } = await api(
          `/api/v1/availability?product=${encodeURIComponent(booking.product)}&location=${encodeURIComponent(booking.location)}&from=${from}&to=${to}`,
        );
        slots = avail.slots || [];
      } catch (exc) {
        clear(box, h("p", { class: "notice error", role: "alert" }, t("common.error", { detail: exc.message })));
        return;
      }
      if (!slots.length) {
        clear(box, h("p", {}, t("book.no_slots")));
        return;
      }
      // A day picker over every free day, then that day's times: nothing is cut off.
      const byDay = new Map();
      for (const slot of slots) {
        const day = brusselsDay(slot.start);
        if (!byDay.has(day)) byDay.set(day, []);
        byDay.get(day).push(slot);
      }
      let chosenDay = byDay.keys().next().value;
      const select = h(
        "select",
        { id: "reschedule-day", onchange: (e) => ((chosenDay = e.target.value), drawTimes()) },
        [...byDay.keys()].map((day) => h("option", { value: day }, `${formatDay(day)} (${byDay.get(day).length})`)),
      );
      const times = h("div", { id: "reschedule-times" });
      function drawTimes() {
        clear(
          times,
          h(
            "fieldset",
            {},
            h("legend", {}, `${t("book.times")} (${t("common.brussels_time")}): ${formatDay(chosenDay)}`),
            h(
              "ul",
              { class: "times" },
              byDay.get(chosenDay).map((slot, i) =>
                h(
                  "li",
                  { class: "choice" },
                  h("input", { type: "radio", name: "reschedule-slot", id: `reschedule-slot-${i}`, value: slot.start, required: true, checked: i === 0 }),
                  h("label", { for: `reschedule-slot-${i}` }, formatTime(slot.start)),
                ),
              ),
            ),
          ),
        );
      }
      drawTimes();
      const chosenStart = () => times.querySelector("input[name=reschedule-slot]:checked")?.value;
      clear(
        box,
        h(
          "form",
          {
            class: "panel",
            onsubmit: async (e) => {
              e.preventDefault();
              try {
                const response = await api(`${path}/reschedule`, {
                  method: "POST",
                  ...auth,
                  body: { start: chosenStart() },
                  headers: { Prefer: "wait=5" },
                  accept: [409],
                });
                if (response.status === 409) {
                  announce(status, response.body.detail || response.body.title, { kind: "error" });
                  return;
                }
                draw(response.body);
                announce(
                  status,
                  response.status === 202 ? t("manage.reschedule_pending") : t("manage.rescheduled", { when: formatDateTime(response.body.start) }),
                  { kind: "ok" },
                );
              } catch (exc) {
                const detail = exc.problem?.errors?.map((x) => x.message).join("; ") || exc.message;
                announce(status, t("common.error", { detail }), { kind: "error" });
              }
            },
          },
          h("div", { class: "field" }, h("label", { for: "reschedule-day" }, t("book.day")), select),
          times,
          h("button", { type: "submit", id: "reschedule-submit" }, t("manage.reschedule_submit")),
        ),
      );
      select.focus();
    }
  }

  await load();
}
