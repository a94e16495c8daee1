// The question box and the conversation. Tokens stream in as a provisional draft; the verified answer from the
// final `answer` event replaces it (the server may have removed sentences that were streamed).
import { ApiError, call, events, saveBlob } from "./api.js";
import { el, show } from "./dom.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const DRAFT = "rag.draft";

export class AskView {
  constructor({ app, source }) {
    this.app = app;
    this.source = source;
    this.turns = []; // {question, answer, element}
    this.busy = false;
    const question = $("question");
    question.value = sessionStorage.getItem(DRAFT) || "";
    question.addEventListener("input", () => sessionStorage.setItem(DRAFT, question.value));
    question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("ask-form").requestSubmit();
      }
    });
    $("ask-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    $("new-conversation").addEventListener("click", () => this.clear());
  }

  clear() {
    this.turns = [];
    $("conversation").replaceChildren();
    show($("ask-error"), null);
  }

  translate() {
    for (const turn of this.turns) if (turn.answer) this.render(turn);
  }

  async submit() {
    const box = $("question");
    const question = box.value.trim();
    const error = $("ask-error");
    const limit = this.app.me?.max_question_chars ?? Infinity;
    if (this.busy) return;
    if (!question) return show(error, t("ask.empty"));
    if (question.length > limit) return show(error, t("ask.too_long", { n: question.length, max: limit }));
    show(error, null);
    const mode = document.querySelector('input[name="mode"]:checked').value;
    const turn = { question, mode, answer: null, element: el("li", { className: "turn" }) };
    const draft = el("p", { className: "provisional" }, t("ask.waiting"));
    const note = el("p", { className: "meta", hidden: true }, t("ask.provisional"));
    turn.element.append(el("p", { className: "asked" }, question), note, draft);
    $("conversation").append(turn.element);
    this.setBusy(true);
    try {
      const history = this.turns.map((previous) => previous.question);
      const response = await call("/v1/ask", { method: "POST", json: { question, mode, history, stream: true } });
      let streamed = "";
      for await (const { event, data } of events(response)) {
        if (event === "token") {
          streamed += data.text;
          draft.textContent = streamed;
          note.hidden = false;
        } else if (event === "error") {
          throw new ApiError(data.error.code, data.error.type, data.error.message);
        } else if (event === "answer") {
          turn.answer = data;
        }
      }
      if (!turn.answer) throw new ApiError(0, "network", "the answer stream ended early");
    } catch (failure) {
      turn.element.remove();
      this.app.failed(failure, error);
      return;
    } finally {
      this.setBusy(false);
    }
    this.turns.push(turn);
    this.render(turn);
    $("announce").textContent = turn.answer.abstained ? t("ask.abstained") : t("ask.ready"); // for screen readers
    box.value = "";
    sessionStorage.removeItem(DRAFT);
    box.focus();
  }

  setBusy(busy) {
    this.busy = busy;
    $("ask-submit").disabled = busy;
    $("conversation").setAttribute("aria-busy", String(busy));
  }

  /** The verified answer (or the abstention) with its citations, sources, removed sentences and actions. */
  render(turn) {
    const answer = turn.answer;
    const sources = new Map(answer.sources.map((source) => [source.n, source]));
    const citing = new Map(); // n -> first sentence citing it, to mark the supporting sentence in the passage
    for (const sentence of answer.sentences) {
      for (const n of sentence.citations) if (!citing.has(n)) citing.set(n, sentence.text);
    }
    const link = (n) => el("a", {
      href: `#source-${n}`, className: "cite", "aria-label": t("ask.show", { n }),
      onclick: (event) => {
        event.preventDefault();
        this.source.open(sources.get(n), citing.get(n) || null);
      },
    }, `[${n}]`);
    const body = el("div", { className: "answer" });
    if (answer.abstained) {
      body.append(el("p", { className: "abstained" }, el("strong", {}, t("ask.abstained"))));
    } else {
      const paragraph = el("p");
      for (const sentence of answer.sentences) {
        paragraph.append(sentence.text, " ");
        for (const n of sentence.citations) if (sources.has(n)) paragraph.append(link(n), " ");
      }
      body.append(paragraph);
    }
    const listed = answer.abstained ? answer.sources : answer.sources.filter((source) => source.cited);
    if (listed.length) {
      body.append(el("h2", { className: "meta" }, t(answer.abstained ? "ask.closest" : "ask.sources")),
                  el("ol", { className: "sources" }, ...listed.map((source) => el("li", { value: source.n },
                    link(source.n), " ", describe(source)))));
    }
    if (answer.removed.length) {
      body.append(el("details", { className: "removed" },
        el("summary", {}, t("ask.removed", { n: answer.removed.length })),
        el("ul", {}, ...answer.removed.map((sentence) =>
          el("li", {}, `“${sentence.text}” — ${reason(sentence)}`)))));
    }
    const markdown = toMarkdown(turn.question, answer);
    const copied = el("span", { className: "meta", role: "status" });
    body.append(el("div", { className: "turn-actions" },
      el("button", { type: "button", className: "secondary", onclick: async () => {
        await navigator.clipboard.writeText(markdown);
        copied.textContent = t("ask.copied");
      } }, t("ask.copy")),
      el("button", { type: "button", className: "secondary", onclick: () =>
        saveBlob(new Blob([markdown], { type: "text/markdown" }), "answer.md") }, t("ask.export")),
      copied));
    turn.element.replaceChildren(el("p", { className: "asked" }, turn.question), body);
  }
}

/** "Title, p. 3 — Chapter 2 › Article 5" */
export function describe(source) {
  const page = source.page ? `, ${t("ask.page", { n: source.page })}` : "";
  const headings = (source.heading_path || []).filter((heading, i) => i > 0 || heading !== source.title);
  const path = headings.length ? ` — ${headings.join(" › ")}` : "";
  return `${source.title}${page}${path}`;
}

function reason(sentence) {
  const words = sentence.missing?.join(", ");
  const missing = words ? `; ${t("ask.removed_missing", { words })}` : "";
  return `${t("ask.removed_reason")} (${Math.round(sentence.support * 100)} %)${missing}`;
}

/** The answer with its sources, as Markdown (what "Copy" and "Download" give). */
export function toMarkdown(question, answer) {
  const lines = [`**${question}**`, ""];
  if (answer.abstained) lines.push(`_${t("ask.abstained")}_`);
  else lines.push(answer.sentences.map((s) => `${s.text}${s.citations.map((n) => ` [${n}]`).join("")}`).join(" "));
  const listed = answer.abstained ? answer.sources : answer.sources.filter((source) => source.cited);
  if (listed.length) {
    lines.push("", `${t(answer.abstained ? "ask.closest" : "ask.sources")}:`, "");
    for (const source of listed) {
      lines.push(`${source.n}. ${describe(source)} (${source.doc_id})  `, `   > ${source.text.replace(/\s+/g, " ")}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
