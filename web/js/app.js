// Client-side router: / (book; ?product=&location=&date= from the e-mails preselect), /manage/{id}?token=...,
// /waitlist/unsubscribe?id=...&token=..., /staff, /ops. The gateway serves index.html for every
// unknown path, so each of these URLs can be opened directly.

import { lang, setLang, t } from "./i18n.js";
import { renderBooking } from "./resident.js";
import { renderManage } from "./manage.js";
import { renderWaitlistUnsubscribe } from "./waitlist.js";
import { renderStaff } from "./staff.js";
import { renderOps } from "./ops.js";

const main = document.getElementById("main");
let cleanup = null;

const routes = [
  { match: /^\/manage\/([^/]+)\/?$/, render: renderManage, nav: "book", title: "manage.title" },
  { match: /^\/waitlist\/unsubscribe\/?$/, render: renderWaitlistUnsubscribe, nav: "book", title: "waitlist.title" },
  { match: /^\/staff\/?$/, render: renderStaff, nav: "staff", title: "staff.title" },
  { match: /^\/ops\/?$/, render: renderOps, nav: "ops", title: "ops.title" },
  { match: /^\/(book\/?)?$/, render: renderBooking, nav: "book", title: "book.title" },
];

function chrome() {
  document.documentElement.lang = lang();
  document.getElementById("skip-link").textContent = t("site.skip");
  document.getElementById("brand").textContent = t("site.title");
  document.getElementById("main-nav").setAttribute("aria-label", t("site.title"));
  document.getElementById("nav-book").textContent = t("nav.book");
  document.getElementById("nav-staff").textContent = t("nav.staff");
  document.getElementById("nav-ops").textContent = t("nav.ops");
  document.getElementById("lang-label").textContent = t("lang.label");
  document.getElementById("lang-select").value = lang();
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

async function render({ focus = true } = {}) {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* ignore */
    }
    cleanup = null;
  }
  chrome();
  const path = location.pathname;
  const route = routes.find((r) => r.match.test(path)) || routes[routes.length - 1];
  const params = path.match(route.match) || [];
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${t(route.title)} – ${t("site.title")}`;
  main.replaceChildren();
  const ctx = {
    main,
    params: params.slice(1),
    query: new URLSearchParams(location.search),
    navigate,
    setTitle: (text) => {
      document.title = `${text} – ${t("site.title")}`;
    },
    onCleanup: (fn) => {
      const previous = cleanup;
      cleanup = () => {
        previous?.();
        fn();
      };
    },
  };
  await route.render(ctx);
  if (focus) {
    const heading = main.querySelector("h1");
    (heading || main).setAttribute("tabindex", "-1");
    (heading || main).focus({ preventScroll: false });
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});

window.addEventListener("popstate", () => render());

document.getElementById("lang-select").addEventListener("change", (event) => {
  setLang(event.target.value);
  // Re-render the current page in the new language, keeping the page's state where it can.
  render({ focus: false });
  document.getElementById("lang-select").focus();
});

setLang(lang());
render({ focus: false });
