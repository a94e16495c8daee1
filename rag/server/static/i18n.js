// Interface texts in English, French and German. The browser's language decides unless the person chose one.
// The texts are in static/locales/<language>.json. Messages the server sends (error details) stay in English:
// they name fields and settings.

export const LANGUAGES = ["en", "fr", "de"];
const TEXTS = {};
let current = "en";

/** Fetch the texts of every language (static/locales/*.json) once, before anything is shown. */
export async function loadTexts() {
  await Promise.all(LANGUAGES.map(async (lang) => {
    TEXTS[lang] = await (await fetch(`/static/locales/${lang}.json`)).json();
  }));
}

/** The language to start with: the person's earlier choice, else the browser's first supported language. */
export function initialLanguage() {
  const chosen = localStorage.getItem("rag.language");
  if (LANGUAGES.includes(chosen)) return chosen;
  const preferred = (navigator.languages || [navigator.language]).map((tag) => (tag || "").slice(0, 2).toLowerCase());
  return preferred.find((tag) => LANGUAGES.includes(tag)) || "en";
}

export function language() {
  return current;
}

/** Switch the interface language and translate every element marked with data-i18n / data-i18n-aria. */
export function setLanguage(lang, { remember = false } = {}) {
  current = LANGUAGES.includes(lang) ? lang : "en";
  if (remember) localStorage.setItem("rag.language", current);
  document.documentElement.lang = current;
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll("[data-i18n-aria]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nAria));
  }
}

/** The text of `key` in the current language with {placeholders} filled in. */
export function t(key, values = {}) {
  const text = TEXTS[current][key] ?? TEXTS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}
