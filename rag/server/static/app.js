// Start-up, sign-in and the two views (#ask, #documents). Each view lives in its own module.
import { ApiError, apiKey, callJson, setApiKey } from "./api.js";
import { AskView } from "./ask.js";
import { show } from "./dom.js";
import { DocumentsView } from "./documents.js";
import { initialLanguage, language, loadTexts, setLanguage, t } from "./i18n.js";
import { SourceViewer } from "./source.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["ask", "documents"];

class App {
  constructor() {
    this.me = null;
    this.source = new SourceViewer({ onError: (error, where) => this.failed(error, where) });
    this.ask = new AskView({ app: this, source: this.source });
    this.documents = new DocumentsView({ app: this });
  }

  async start() {
    await loadTexts();
    setLanguage(initialLanguage());
    $("language").value = language();
    $("language").addEventListener("change", (event) => {
      setLanguage(event.target.value, { remember: true });
      this.ask.translate();
      this.documents.translate();
    });
    $("signin-form").addEventListener("submit", (event) => this.signIn(event));
    $("sign-out").addEventListener("click", () => this.signOut());
    window.addEventListener("hashchange", () => this.route());
    await this.whoAmI();
  }

  /** Ask the server who we are: with the key of this tab, or with none (behind a signing-in proxy). */
  async whoAmI() {
    try {
      this.me = await callJson("/v1/me");
    } catch (error) {
      this.me = null;
      $("loading").hidden = true;
      if (error instanceof ApiError && error.status === 401) return this.showSignIn();
      return this.notice(error);
    }
    this.notice(null);
    $("loading").hidden = true;
    $("who-name").textContent = this.me.principal;
    $("sign-out").hidden = !apiKey(); // signed in by the proxy (or no keys at all): nothing to sign out of here
    $("who").hidden = false;
    $("nav").hidden = false;
    this.documents.configure(this.me);
    this.route();
  }

  async signIn(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    const error = $("signin-error");
    if (!key) return show(error, t("signin.empty"));
    setApiKey(key);
    try {
      this.me = await callJson("/v1/me");
    } catch (failure) {
      setApiKey(null);
      return show(error, failure.status === 401 ? t("signin.refused") : failure.explain());
    }
    show(error, null);
    $("api-key").value = "";
    $("view-signin").hidden = true;
    await this.whoAmI();
  }

  signOut() {
    sessionStorage.clear(); // the key and the draft question: the next person at this browser finds neither
    $("question").value = "";
    this.me = null;
    this.ask.clear();
    this.documents.clear();
    $("who").hidden = true;
    $("nav").hidden = true;
    this.showSignIn();
  }

  showSignIn(message = null) {
    for (const name of VIEWS) $(`view-${name}`).hidden = true;
    $("view-signin").hidden = false;
    show($("signin-error"), message);
    $("api-key").focus();
  }

  route() {
    if (!this.me) return;
    const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "ask";
    for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
    $("view-signin").hidden = true;
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (name === "documents") this.documents.load();
    else $("question").focus();
  }

  /** React to a failed request: an expired key leads back to the sign-in form, anything else is shown. */
  failed(error, where = null) {
    if (error instanceof ApiError && error.status === 401) {
      if ($("source").open) $("source").close();
      setApiKey(null);
      this.me = null;
      $("who").hidden = true;
      $("nav").hidden = true;
      this.showSignIn(t("error.signin"));
      return;
    }
    const message = error instanceof ApiError ? error.explain(this.me || {}) : String(error);
    if (where) show(where, message);
    else this.notice(error);
  }

  notice(error) {
    show($("notice"), error ? (error instanceof ApiError ? error.explain(this.me || {}) : String(error)) : null);
  }
}

new App().start();
