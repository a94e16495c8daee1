// The source of a citation: the passage in its surrounding text with the supporting sentence marked, the PDF page
// image with the passage's region marked, and the original file for download.
import { call, callJson, download } from "./api.js";
import { el, show } from "./dom.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export class SourceViewer {
  constructor({ onError }) {
    this.onError = onError;
    this.imageUrl = null;
    $("source-close").addEventListener("click", () => $("source").close());
    $("source").addEventListener("close", () => this.reset());
  }

  reset() {
    if (this.imageUrl) URL.revokeObjectURL(this.imageUrl);
    this.imageUrl = null;
    $("source-page").removeAttribute("src");
    $("source-figure").hidden = true;
    $("source-download").hidden = true;
    $("source-text").replaceChildren();
    show($("source-error"), null);
  }

  /** Open the dialog on `source` (a source of an answer); `sentence` is the answer sentence citing it. */
  async open(source, sentence) {
    const dialog = $("source");
    this.reset();
    $("source-title").textContent = source.title;
    $("source-where").textContent = where(source.heading_path, source.page);
    if (!dialog.open) dialog.showModal();
    let passage;
    try {
      passage = await callJson("/v1/passages", { method: "POST", json: { chunk_id: source.chunk_id, sentence } });
    } catch (error) {
      return this.failed(error);
    }
    this.showText(passage);
    const doc = passage.document;
    if (passage.original) {
      const button = $("source-download");
      button.hidden = false;
      button.onclick = () => download(`/v1/documents/${encodeURIComponent(doc.doc_id)}/original`,
                                      doc.source.split("/").pop()).catch((error) => this.failed(error));
    }
    if (doc.format === "pdf" && passage.original && passage.page) await this.showPage(passage);
  }

  showText(passage) {
    const text = passage.context;
    const offset = passage.context_start;
    const [a, b] = [passage.passage.start - offset, passage.passage.end - offset];
    const sentence = passage.sentence;
    const inner = sentence
      ? [text.slice(a, sentence.start - offset),
         el("mark", { className: "support" }, text.slice(sentence.start - offset, sentence.end - offset)),
         text.slice(sentence.end - offset, b)]
      : [text.slice(a, b)];
    const mark = el("mark", { className: "passage" }, ...inner);
    $("source-text").replaceChildren(text.slice(0, a), mark, text.slice(b));
    (mark.querySelector(".support") || mark).scrollIntoView({ block: "center" });
  }

  async showPage(passage) {
    const doc = passage.document;
    const query = new URLSearchParams({ chunk_id: passage.chunk_id });
    if (passage.sentence) {
      query.set("start", passage.sentence.start);
      query.set("end", passage.sentence.end);
    }
    try {
      const response = await call(`/v1/documents/${encodeURIComponent(doc.doc_id)}/pages/${passage.page}?${query}`);
      this.imageUrl = URL.createObjectURL(await response.blob());
    } catch (error) {
      return this.failed(error);
    }
    const image = $("source-page");
    image.src = this.imageUrl;
    image.alt = t("source.page_alt", { page: passage.page, title: doc.title });
    $("source-caption").textContent = t("source.page_caption", { page: passage.page });
    $("source-figure").hidden = false;
  }

  failed(error) {
    this.onError(error, $("source-error"));
  }
}

function where(headingPath, page) {
  const parts = [...(headingPath || [])];
  if (page) parts.push(t("source.page", { n: page }));
  return parts.join(" › ");
}
