// Residents: choose a product, a location, a day and a time; fill in details; get the decision.
// The e-mails (rejection alternatives, waitlist notices) link to /?product=&location=&date=YYYY-MM-DD:
// those choices are made on load, so the resident only has to pick a time.

import { api, ApiError, getLocations, getProducts, newKey } from "./api.js";
import { h, clear } from "./dom.js";
import { brusselsDay, formatDateTime, formatDay, formatFee, formatTime, lang, localized, t } from "./i18n.js";

// Kept across re-renders (e.g. a language switch) for the page's life.
const state = {
  product: null,
  location: null,
  day: null,
  slot: null,
  slots: [],
  locations: [],
  details: {},
  result: null,
  linkNotes: [], // what could not be taken over from the e-mail link: [{key, day}]
};

// The query string of the e-mail link last applied: a re-render (language switch) keeps the state.
let appliedLink = null;

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** The choices of an e-mail link (?product=&location=&date=), or null when there are none. */
function linkFrom(query) {
  const link = {
    product: (query.get("product") || "").trim(),
    location: (query.get("location") || "").trim(),
    date: (query.get("date") || "").trim(),
  };
  return link.product || link.location || link.date ? link : null;
}

function validDate(text) {
  if (!DATE.test(text)) return false;
  const date = new Date(`${text}T12:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === text;
}

const FIELDS = [
  { name: "person.given_name", type: "text", label: "book.given_name", autocomplete: "given-name", required: true },
  { name: "person.family_name", type: "text", label: "book.family_name", autocomplete: "family-name", required: true },
  { name: "person.birth_date", type: "date", label: "book.birth_date", autocomplete: "bday" },
  {
    name: "person.national_number",
    type: "text",
    label: "book.national_number",
    hint: "book.national_number_hint",
    inputmode: "numeric",
  },
  { name: "person.nationality", type: "text", label: "book.nationality", autocomplete: "off" },
  { name: "contact.email", type: "email", label: "book.email", hint: "book.email_hint", autocomplete: "email", required: true },
  { name: "contact.phone", type: "tel", label: "book.phone", hint: "book.phone_hint", autocomplete: "tel" },
];

const needsBirthDate = (product) => !!product?.eligibility?.requires_birth_date;

export const fieldId = (name) => `f-${name.replace(/\./g, "-")}`;

// One Idempotency-Key per booking the resident means: kept while the same request is sent again
// (a click after an error: the first may have been booked, its answer lost), new once it was
// answered or the request changed.
let pendingBooking = null;

function keyFor(booking) {
  const body = JSON.stringify(booking);
  if (pendingBooking?.body !== body) pendingBooking = { body, key: newKey() };
  return pendingBooking.key;
}

export async function renderBooking(ctx) {
  const { main } = ctx;
  main.append(h("h1", {}, t("book.title")), h("p", {}, t("book.intro")), cityNotes());
  const decision = h("div", { id: "decision", "aria-live": "polite" });
  const body = h("div", { id: "booking" });
  main.append(body, decision);

  let products;
  try {
    products = await getProducts();
  } catch (exc) {
    body.append(h("p", { class: "notice error", role: "alert" }, describe(exc)));
    return;
  }

  let link = linkFrom(ctx.query);
  const linkKey = link ? JSON.stringify(link) : null;
  if (link && linkKey !== appliedLink) {
    appliedLink = linkKey;
    Object.assign(state, { product: null, location: null, day: null, slot: null, slots: [], result: null, linkNotes: [] });
  } else {
    link = null;
  }

  if (state.result) {
    showResult(decision, body, products, state.result, ctx);
    return;
  }
  buildForm(body, decision, products, ctx, link);
}

// What the city's page says before anyone books: the Migration Information Centre answers
// questions, some matters go by e-mail without an appointment, and a card is picked up where it
// was applied for.
const CITY_EMAIL = "migratie@stad.gent";
const BY_EMAIL = ["long_stay", "card_switch", "annex_35", "annex_49", "return", "identity", "cgrs"];

function cityNotes() {
  return h(
    "aside",
    { class: "notice", id: "city-notes", "aria-labelledby": "city-notes-title" },
    h("h2", { id: "city-notes-title" }, t("book.info_title")),
    h("p", { id: "info-centre" }, t("book.info_centre")),
    h("p", { id: "pickup-rule" }, t("book.pickup_rule")),
    h(
      "details",
      { id: "by-email" },
      h("summary", {}, t("book.by_email_title", { email: CITY_EMAIL })),
      h("ul", {}, BY_EMAIL.map((key) => h("li", {}, t(`book.by_email.${key}`)))),
      h("p", {}, h("a", { href: `mailto:${CITY_EMAIL}` }, CITY_EMAIL)),
    ),
  );
}

function describe(exc) {
  if (exc instanceof ApiError && exc.status === 0) return t("common.offline");
  return t("common.error", { detail: exc.message });
}

function buildForm(body, decision, products, ctx, link) {
  const linkNotice = h("div", { id: "link-notice", role: "status" });
  const errorSummary = h("div", { id: "error-summary", tabindex: "-1", hidden: true });
  const productSet = h(
    "fieldset",
    { id: "product-fieldset" },
    h("legend", {}, t("book.step.product")),
    h(
      "ul",
      { class: "choices" },
      products.map((p) => {
        const id = `product-${p.id}`;
        const docs = (p.documents || []).map(localized).join(", ");
        return h(
          "li",
          { class: "choice" },
          h("input", {
            type: "radio",
            name: "product",
            id,
            value: p.id,
            checked: state.product === p.id,
            "aria-describedby": `${id}-meta`,
            onchange: () => (dismissLinkNotes(), chooseProduct(p.id)),
          }),
          h(
            "label",
            { for: id },
            h("span", { class: "name" }, localized(p.name)),
            h(
              "span",
              { class: "meta", id: `${id}-meta` },
              localized(p.description),
              h("br"),
              `${t("book.bring")}: ${docs || "–"} · ${t("book.fee")}: ${formatFee(p.fee_eur)} · ${t("book.duration")}: ${t("common.minutes", { n: p.duration_minutes })}`,
              p.requires_confirmation ? [h("br"), h("strong", { class: "needs-confirmation" }, t("book.needs_confirmation"))] : null,
            ),
          ),
        );
      }),
    ),
  );
  const locationSet = h("fieldset", { id: "location-fieldset" }, h("legend", {}, t("book.step.location")));
  const timeSet = h("fieldset", { id: "time-fieldset" }, h("legend", {}, t("book.step.time")));
  const detailSet = h(
    "fieldset",
    { id: "details-fieldset" },
    h("legend", {}, t("book.step.details")),
    h(
      "div",
      { class: "grid-2" },
      FIELDS.map((f) => {
        const id = fieldId(f.name);
        const hintId = `${id}-hint`;
        const childBirth = f.name === "person.birth_date" && needsBirthDate(products.find((p) => p.id === state.product));
        const label = childBirth ? t("book.birth_date_child") : t(f.label);
        const required = f.required || childBirth;
        return h(
          "div",
          { class: "field", id: `${id}-field` },
          h("label", { for: id }, label, " ", h("span", { class: "hint required-mark", style: "display:inline" }, required ? t("book.required") : t("book.optional"))),
          f.hint ? h("span", { class: "hint", id: hintId }, t(f.hint)) : null,
          h("input", {
            id,
            name: f.name,
            type: f.type,
            autocomplete: f.autocomplete || null,
            inputmode: f.inputmode || null,
            required: !!required,
            "aria-required": required ? "true" : null,
            "aria-describedby": f.hint ? hintId : null,
            value: state.details[f.name] || "",
            oninput: (e) => {
              state.details[f.name] = e.target.value;
            },
          }),
        );
      }),
    ),
  );
  const summary = h("p", { id: "choice-summary", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "submit-booking" }, t("book.submit"));
  const form = h(
    "form",
    { id: "booking-form", novalidate: true, onsubmit: (e) => (e.preventDefault(), submitBooking()) },
    errorSummary,
    productSet,
    locationSet,
    timeSet,
    detailSet,
    summary,
    h("div", { class: "actions" }, submit),
  );
  body.append(linkNotice, form);
  drawLinkNotes();

  const productById = (id) => products.find((p) => p.id === id);

  async function chooseProduct(id, keep = false) {
    if (!keep) {
      state.product = id;
      state.location = null;
      state.slot = null;
      state.slots = [];
    }
    const birth = document.querySelector(`label[for="${fieldId("person.birth_date")}"]`);
    const birthInput = document.getElementById(fieldId("person.birth_date"));
    if (birth && birthInput) {
      const childBirth = needsBirthDate(productById(id));
      birth.firstChild.textContent = childBirth ? t("book.birth_date_child") : t("book.birth_date");
      birth.querySelector(".required-mark").textContent = childBirth ? t("book.required") : t("book.optional");
      birthInput.required = childBirth;
      if (childBirth) birthInput.setAttribute("aria-required", "true");
      else birthInput.removeAttribute("aria-required");
    }
    clear(locationSet, h("legend", {}, t("book.step.location")), h("p", { role: "status" }, t("common.loading")));
    clear(timeSet, h("legend", {}, t("book.step.time")), h("p", { class: "hint" }, t("book.choose_location_first")));
    updateSummary();
    try {
      const { body: locs } = await api(`/api/v1/locations?product=${encodeURIComponent(id)}`);
      state.locations = locs;
    } catch (exc) {
      clear(locationSet, h("legend", {}, t("book.step.location")), h("p", { class: "notice error", role: "alert" }, describe(exc)));
      return false;
    }
    clear(
      locationSet,
      h("legend", {}, t("book.step.location")),
      productById(id)?.eligibility?.same_location_as_application ? h("p", { class: "hint", id: "pickup-location-rule" }, t("book.pickup_rule")) : null,
      h(
        "ul",
        { class: "choices" },
        state.locations.map((loc) => {
          const lid = `location-${loc.id}`;
          return h(
            "li",
            { class: "choice" },
            h("input", {
              type: "radio",
              name: "location",
              id: lid,
              value: loc.id,
              checked: state.location === loc.id,
              onchange: () => (dismissLinkNotes(), chooseLocation(loc.id)),
            }),
            h("label", { for: lid }, h("span", { class: "name" }, loc.name), h("span", { class: "meta" }, loc.address)),
          );
        }),
      ),
    );
    if (keep && state.location) return chooseLocation(state.location, true);
    return true;
  }

  async function chooseLocation(id, keep = false) {
    if (!keep) {
      state.location = id;
      state.slot = null;
      state.day = null;
    }
    updateSummary();
    clear(timeSet, h("legend", {}, t("book.step.time")), h("p", { role: "status" }, t("common.loading")));
    const product = productById(state.product);
    const from = brusselsDay();
    const days = Math.min(product?.max_days_ahead || 60, 90);
    const to = brusselsDay(Date.now() + days * 86400000);
    try {
      const { body: avail } = await api(
        `/api/v1/availability?product=${encodeURIComponent(state.product)}&location=${encodeURIComponent(id)}&from=${from}&to=${to}`,
      );
      state.slots = avail.slots || [];
    } catch (exc) {
      clear(timeSet, h("legend", {}, t("book.step.time")), h("p", { class: "notice error", role: "alert" }, describe(exc)));
      return false;
    }
    renderTimes();
    return true;
  }

  /** The resident makes a choice of their own: the notes about the link have served. */
  function dismissLinkNotes() {
    if (!state.linkNotes.length) return;
    state.linkNotes = [];
    drawLinkNotes();
  }

  function drawLinkNotes() {
    clear(
      linkNotice,
      state.linkNotes.length
        ? h(
            "div",
            { class: "notice warn" },
            state.linkNotes.map((note) => h("p", { dataset: { note: note.key } }, t(note.key, { day: note.day ? formatDay(note.day) : "" }))),
          )
        : null,
    );
  }

  /** Make the choices of an e-mail link; say which could not be made (and start from there). */
  async function applyLink({ product, location, date }) {
    const notes = [];
    const done = () => {
      state.linkNotes = notes;
      drawLinkNotes();
    };
    const chosen = product ? productById(product) : null;
    if (!chosen) {
      if (product || location || date) notes.push({ key: "book.link_product_unknown" });
      return done();
    }
    state.product = chosen.id;
    const productInput = document.getElementById(`product-${chosen.id}`);
    if (productInput) productInput.checked = true;
    const day = date && validDate(date) ? date : null;
    if (date && !day) notes.push({ key: "book.link_date_invalid" });
    if (!(await chooseProduct(chosen.id))) return done();
    if (!location) return done();
    if (!state.locations.some((l) => l.id === location)) {
      notes.push({ key: "book.link_location_unknown" });
      return done();
    }
    state.location = location;
    state.slot = null;
    state.day = day;
    const locationInput = document.getElementById(`location-${location}`);
    if (locationInput) locationInput.checked = true;
    updateSummary();
    const loaded = await chooseLocation(location, true);
    if (loaded && day && !state.slots.some((slot) => brusselsDay(slot.start) === day)) {
      notes.push({ key: "book.link_day_full", day });
    }
    done();
    if (loaded && day && !notes.length) timeSet.scrollIntoView({ block: "start" });
  }

  function renderTimes() {
    const byDay = new Map();
    for (const slot of state.slots) {
      const day = brusselsDay(slot.start);
      if (!byDay.has(day)) byDay.set(day, []);
      byDay.get(day).push(slot);
    }
    if (!byDay.size) {
      clear(
        timeSet,
        h("legend", {}, t("book.step.time")),
        h("p", {}, t("book.no_slots")),
        waitlistForm(state.product, state.location),
      );
      return;
    }
    if (!state.day || !byDay.has(state.day)) state.day = byDay.keys().next().value;
    const daySelect = h(
      "select",
      {
        id: "day-select",
        onchange: (e) => {
          state.day = e.target.value;
          state.slot = null;
          drawTimes();
          updateSummary();
        },
      },
      [...byDay.keys()].map((day) =>
        h("option", { value: day, selected: day === state.day }, `${formatDay(day)} (${byDay.get(day).length})`),
      ),
    );
    const timesBox = h("div", { id: "times" });
    function drawTimes() {
      const slots = byDay.get(state.day) || [];
      clear(
        timesBox,
        h(
          "fieldset",
          { id: "times-fieldset" },
          h("legend", {}, `${t("book.times")} (${t("common.brussels_time")}): ${formatDay(state.day)}`),
          h(
            "ul",
            { class: "times" },
            slots.map((slot, i) => {
              const sid = `slot-${i}`;
              return h(
                "li",
                { class: "choice" },
                h("input", {
                  type: "radio",
                  name: "slot",
                  id: sid,
                  value: slot.start,
                  checked: state.slot?.start === slot.start,
                  onchange: () => {
                    state.slot = slot;
                    updateSummary();
                  },
                }),
                h("label", { for: sid }, formatTime(slot.start)),
              );
            }),
          ),
        ),
      );
    }
    drawTimes();
    clear(
      timeSet,
      h("legend", {}, t("book.step.time")),
      h("div", { class: "field" }, h("label", { for: "day-select" }, t("book.day")), daySelect),
      timesBox,
    );
  }

  function updateSummary() {
    const product = productById(state.product);
    const loc = state.locations.find((l) => l.id === state.location);
    summary.textContent =
      product && loc && state.slot
        ? t("book.summary", { product: localized(product.name), location: loc.name, when: formatDateTime(state.slot.start) })
        : "";
  }

  function clearErrors() {
    errorSummary.hidden = true;
    errorSummary.replaceChildren();
    for (const el of form.querySelectorAll(".field-error")) el.remove();
    for (const el of form.querySelectorAll("[aria-invalid]")) {
      el.removeAttribute("aria-invalid");
      const described = (el.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && !x.endsWith("-error"));
      if (described.length) el.setAttribute("aria-describedby", described.join(" "));
      else el.removeAttribute("aria-describedby");
    }
  }

  /** Show each {field, message} next to its field, and a summary with links at the top. */
  function showErrors(errors) {
    clearErrors();
    const items = [];
    for (const { field, message } of errors) {
      let target = document.getElementById(fieldId(field));
      let container = target?.closest(".field");
      if (!target) {
        const set = {
          product: productSet,
          location: locationSet,
          start: timeSet,
          "contact": detailSet,
        }[field.split(".")[0]] || detailSet;
        target = set.querySelector("input, select") || set;
        container = set;
      }
      const errorId = `${target.id || field}-error`;
      const error = h("p", { class: "field-error", id: errorId }, message);
      if (container === target.closest(".field")) target.before(error);
      else container.querySelector("legend").after(error);
      target.setAttribute("aria-invalid", "true");
      target.setAttribute("aria-describedby", [target.getAttribute("aria-describedby"), errorId].filter(Boolean).join(" "));
      const label = document.querySelector(`label[for="${target.id}"]`)?.firstChild?.textContent || field;
      items.push(h("li", {}, h("a", { href: `#${target.id}`, onclick: (e) => (e.preventDefault(), target.focus()) }, `${label.trim()}: ${message}`)));
    }
    errorSummary.className = "error-summary";
    errorSummary.setAttribute("role", "alert");
    errorSummary.append(h("h2", {}, t("book.errors_title")), h("ul", {}, items));
    errorSummary.hidden = false;
    errorSummary.focus();
  }

  function collect() {
    const value = (name) => (state.details[name] || "").trim() || undefined;
    return {
      product: state.product,
      location: state.location,
      start: state.slot?.start,
      person: {
        given_name: value("person.given_name"),
        family_name: value("person.family_name"),
        birth_date: value("person.birth_date"),
        national_number: value("person.national_number"),
        nationality: value("person.nationality"),
      },
      contact: { email: value("contact.email"), phone: value("contact.phone") },
      language: lang(),
    };
  }

  function localChecks(booking) {
    const missing = [];
    const need = { nl: "Vul dit in.", en: "Please fill this in.", fr: "Veuillez compléter ce champ." }[lang()];
    const choose = { nl: "Maak een keuze.", en: "Please choose.", fr: "Veuillez choisir." }[lang()];
    if (!booking.product) missing.push({ field: "product", message: choose });
    else if (!booking.location) missing.push({ field: "location", message: choose });
    else if (!booking.start) missing.push({ field: "start", message: choose });
    const product = productById(booking.product);
    for (const f of FIELDS.filter((x) => x.required || (x.name === "person.birth_date" && needsBirthDate(product)))) {
      const [group, key] = f.name.split(".");
      if (!booking[group][key]) missing.push({ field: f.name, message: need });
    }
    return missing;
  }

  async function submitBooking(override) {
    // Read the inputs once more (autofill may not fire input events).
    for (const f of FIELDS) state.details[f.name] = document.getElementById(fieldId(f.name))?.value ?? state.details[f.name];
    const booking = collect();
    if (override) Object.assign(booking, override);
    const missing = override ? [] : localChecks(booking);
    if (missing.length) {
      showErrors(missing);
      return;
    }
    clearErrors();
    submit.disabled = true;
    clear(decision, h("p", { class: "notice", role: "status" }, t("book.submitting")));
    try {
      const response = await api("/api/v1/bookings", {
        method: "POST",
        body: booking,
        headers: { Prefer: "wait=5", "Idempotency-Key": keyFor(booking) },
        accept: [409, 422],
      });
      pendingBooking = null; // answered: a new booking gets a new key
      window.__lastBooking = response.body; // for tests and debugging: the API's answer
      if (response.status === 422) {
        clear(decision);
        showErrors(response.body.errors || [{ field: "body", message: response.body.detail }]);
      } else if (response.status === 409) {
        showAlternatives(response.body, booking);
      } else {
        state.result = { ...response.body, email: booking.contact.email, product: booking.product, location: response.body.location || booking.location, start: response.body.start || booking.start };
        showResult(decision, body, products, state.result, ctx);
      }
    } catch (exc) {
      clear(decision, h("div", { class: "notice error", role: "alert" }, describe(exc)));
    } finally {
      submit.disabled = false;
    }
  }

  async function showAlternatives(problem, booking) {
    const all = await getLocations().catch(() => []);
    const name = (id) => all.find((l) => l.id === id)?.name || id;
    const alternatives = problem.alternatives || [];
    const heading = h("h2", { tabindex: "-1" }, t("book.gone_title"));
    clear(
      decision,
      h(
        "div",
        { class: "notice warn", id: "alternatives" },
        heading,
        alternatives.length ? h("p", {}, t("book.gone")) : h("p", {}, t("book.no_alternatives")),
        h(
          "ul",
          { class: "actions", style: "list-style:none;padding:0" },
          alternatives.map((alt) =>
            h(
              "li",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "secondary alternative",
                  onclick: () => {
                    state.slot = { start: alt.start, end: alt.end };
                    state.location = alt.location || booking.location;
                    submitBooking({ start: alt.start, location: alt.location || booking.location });
                  },
                },
                t("book.take", { when: formatDateTime(alt.start), location: name(alt.location || booking.location) }),
              ),
            ),
          ),
        ),
        h("p", {}, t("book.waitlist_hint")),
        waitlistForm(booking.product, booking.location, booking.contact.email),
      ),
    );
    heading.focus();
    // The taken time is no longer free: refresh the times.
    if (state.location) chooseLocation(state.location, true);
  }

  if (link) applyLink(link);
  else if (state.product) chooseProduct(state.product, true);
}

function waitlistForm(product, location, email = "") {
  const status = h("p", { class: "status-line", role: "status" });
  const input = h("input", { type: "email", id: "waitlist-email", autocomplete: "email", required: true, value: email || "" });
  return h(
    "form",
    {
      class: "waitlist",
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const from = brusselsDay();
        const to = brusselsDay(Date.now() + 60 * 86400000);
        try {
          await api("/api/v1/waitlist", {
            method: "POST",
            body: { product, location, from, to, email: input.value.trim(), language: lang() },
          });
          status.dataset.kind = "ok";
          status.textContent = t("book.waitlist_done");
        } catch (exc) {
          status.dataset.kind = "error";
          const detail = exc.problem?.errors?.map((x) => x.message).join("; ") || exc.message;
          status.textContent = t("common.error", { detail });
        }
      },
    },
    h("h3", {}, t("book.waitlist_title")),
    h("div", { class: "field" }, h("label", { for: "waitlist-email" }, t("book.waitlist_email")), input),
    h("button", { type: "submit", class: "secondary" }, t("book.waitlist_submit")),
    status,
  );
}

function showResult(decision, body, products, result, ctx) {
  body.replaceChildren();
  const product = products.find((p) => p.id === result.product);
  const manage = `/manage/${encodeURIComponent(result.id)}?token=${encodeURIComponent(result.manage_token)}`;
  const ics = `/api/v1/bookings/${encodeURIComponent(result.id)}/calendar.ics?token=${encodeURIComponent(result.manage_token)}`;
  const place = state.locations.find((l) => l.id === result.location);
  const location = place?.name || result.location;
  const when = formatDateTime(result.start);
  let kind = "ok";
  let title;
  let text;
  if (result.status === "confirmed") {
    title = t("book.confirmed_title");
    text = t("book.confirmed", { product: localized(product?.name), when, location });
  } else if (result.status === "held") {
    kind = "warn";
    title = t("book.held_title");
    text = t("book.held", { when, expires: formatDateTime(result.hold_expires_at) });
  } else {
    kind = "";
    title = t("book.requested_title");
    text = t("book.requested");
  }
  // What the resident needs on the day and on the phone: the reference (not a desk id), what to
  // bring, the fee, the address, and where the e-mail went.
  const facts = h(
    "dl",
    { class: "facts", id: "decision-facts" },
    result.reference ? [h("dt", {}, t("book.reference")), h("dd", {}, h("strong", { id: "booking-reference", class: "reference" }, result.reference), h("br"), h("span", { class: "hint" }, t("book.reference_hint")))] : null,
    product ? [h("dt", {}, t("book.bring")), h("dd", { id: "decision-bring" }, (product.documents || []).map(localized).join(", ") || "–")] : null,
    product ? [h("dt", {}, t("book.fee")), h("dd", { id: "decision-fee" }, formatFee(product.fee_eur))] : null,
    place ? [h("dt", {}, t("book.address")), h("dd", { id: "decision-address" }, `${place.name}, ${place.address}`)] : null,
  );
  const heading = h("h2", { tabindex: "-1", id: "decision-title" }, title);
  clear(
    decision,
    h(
      "div",
      { class: `notice ${kind}`, id: "decision-card", dataset: { status: result.status, bookingId: result.id } },
      heading,
      h("p", {}, text),
      facts,
      result.email ? h("p", { id: "decision-email" }, t("book.email_sent", { email: result.email })) : null,
      h(
        "div",
        { class: "actions" },
        h("a", { class: "button", href: manage, "data-link": true, id: "manage-link" }, t("book.manage_link")),
        result.status !== "requested"
          ? h("a", { class: "button secondary", href: ics, download: `loket-${result.id}.ics`, id: "ics-link" }, t("book.add_calendar"))
          : null,
      ),
    ),
    h(
      "p",
      {},
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            state.result = null;
            state.slot = null;
            state.linkNotes = [];
            ctx.navigate("/", { replace: true });
          },
        },
        t("book.new"),
      ),
    ),
  );
  heading.focus();
}
