// Sign-in for staff and operations (local demo issuer: POST /api/v1/auth/token).

import { ApiError, session, signIn, signOut } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

/** Resolve with a session that has one of `roles`, showing a sign-in form in `container` if needed. */
export function requireSession(container, roles, onSignedIn) {
  const current = session();
  if (current && current.roles.some((r) => roles.includes(r))) {
    onSignedIn(current);
    return;
  }
  const error = h("p", { class: "status-line", role: "alert", id: "signin-error" });
  const user = h("input", { type: "text", id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { type: "password", id: "password", name: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    {
      class: "panel",
      id: "signin-form",
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = "";
        try {
          const saved = await signIn(user.value.trim(), pass.value);
          if (!saved.roles.some((r) => roles.includes(r))) {
            signOut();
            error.dataset.kind = "error";
            error.textContent = t("auth.need_role", { role: roles[0] });
            return;
          }
          form.remove();
          onSignedIn(saved);
        } catch (exc) {
          error.dataset.kind = "error";
          error.textContent = exc instanceof ApiError && exc.status === 401 ? t("auth.failed") : t("common.error", { detail: exc.message });
          pass.focus();
        }
      },
    },
    h("h2", {}, t("auth.title")),
    h("div", { class: "field" }, h("label", { for: "username" }, t("auth.username")), user),
    h("div", { class: "field" }, h("label", { for: "password" }, t("auth.password")), pass),
    error,
    h("button", { type: "submit", id: "signin-submit" }, t("auth.submit")),
  );
  container.append(form);
}

export function whoAmI(saved, navigate) {
  return h(
    "p",
    { class: "no-print" },
    t("auth.signed_in", { user: saved.username }),
    " ",
    h(
      "button",
      {
        type: "button",
        class: "secondary small",
        id: "signout",
        onclick: () => {
          signOut();
          navigate(location.pathname, { replace: true });
        },
      },
      t("auth.sign_out"),
    ),
  );
}
