// The documents the person may see: list, filter by title, upload (several files, drag and drop, per-file progress
// and result), download, delete. Each file is its own upload request, so one bad file does not hold back the others.
import { ApiError, call, callJson, download, upload } from "./api.js";
import { el, show } from "./dom.js";
import { language, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export class DocumentsView {
  constructor({ app }) {
    this.app = app;
    this.documents = [];
    this.uploads = []; // {file, state, message, progress, row}
    $("filter").addEventListener("input", () => this.renderTable());
    $("files").addEventListener("change", (event) => {
      this.send([...event.target.files]);
      event.target.value = "";
    });
    const drop = $("drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      this.send([...event.dataTransfer.files]);
    });
  }

  /** Offer uploads to admins, with the labels they hold (the server's defaults among them pre-selected). */
  configure(me) {
    $("upload").hidden = !me.admin;
    const box = $("upload-labels");
    box.replaceChildren(box.querySelector("legend"));
    me.labels.forEach((label, i) => {
      const id = `label-${i}`;
      box.append(el("input", { type: "checkbox", id, value: label, checked: me.default_labels.includes(label) }),
                 el("label", { htmlFor: id }, label));
    });
    $("files-hint").textContent = t("docs.limit", { mb: me.max_upload_mb });
  }

  clear() {
    this.documents = [];
    this.uploads = [];
    $("documents-body").replaceChildren();
    $("upload-results").replaceChildren();
  }

  translate() {
    if (this.app.me) $("files-hint").textContent = t("docs.limit", { mb: this.app.me.max_upload_mb });
    this.renderTable();
    this.uploads.forEach((item) => this.renderUpload(item));
  }

  async load() {
    try {
      this.documents = (await callJson("/v1/documents")).documents;
      show($("documents-error"), null);
    } catch (error) {
      this.app.failed(error, $("documents-error"));
    }
    this.renderTable();
  }

  renderTable() {
    const needle = $("filter").value.trim().toLocaleLowerCase();
    const shown = this.documents.filter((doc) => doc.title.toLocaleLowerCase().includes(needle))
      .sort((a, b) => a.title.localeCompare(b.title));
    const date = new Intl.DateTimeFormat(language(), { dateStyle: "medium" });
    $("documents-body").replaceChildren(...shown.map((doc) => el("tr", {},
      el("td", {}, doc.title),
      el("td", {}, doc.lang),
      el("td", {}, doc.format),
      el("td", {}, doc.pages ?? "—"),
      el("td", {}, doc.labels.join(", ")),
      el("td", {}, date.format(new Date(doc.ingested_at * 1000))),
      el("td", { className: "row-actions" },
        el("button", { type: "button", className: "link", "aria-label": t("docs.download_named", { title: doc.title }),
                       onclick: () => this.download(doc) }, t("docs.download")),
        this.app.me?.admin ? el("button", { type: "button", className: "link",
                                            "aria-label": t("docs.delete_named", { title: doc.title }),
                                            onclick: () => this.remove(doc) }, t("docs.delete")) : null))));
    $("documents-empty").hidden = shown.length > 0;
  }

  async download(doc) {
    try {
      await download(`/v1/documents/${encodeURIComponent(doc.doc_id)}/original`, doc.source.split("/").pop());
    } catch (error) {
      this.app.failed(error, $("documents-error"));
    }
  }

  async remove(doc) {
    if (!window.confirm(t("docs.confirm_delete", { title: doc.title }))) return;
    try {
      await call(`/v1/documents/${encodeURIComponent(doc.doc_id)}`, { method: "DELETE" });
    } catch (error) {
      return this.app.failed(error, $("documents-error"));
    }
    show($("documents-error"), null);
    await this.load();
  }

  /** Upload `files` one after the other with the chosen labels; each gets its own row with progress and result. */
  async send(files) {
    const labels = [...$("upload-labels").querySelectorAll("input:checked")].map((box) => box.value);
    if (!files.length) return;
    if (!labels.length) return show($("documents-error"), t("docs.no_label"));
    show($("documents-error"), null);
    const items = files.map((file) => ({ file, state: "waiting", message: "", progress: 0, row: null }));
    this.uploads.push(...items);
    for (const item of items) {
      item.row = el("li");
      $("upload-results").append(item.row);
      this.renderUpload(item);
    }
    for (const item of items) {
      item.state = "sending";
      this.renderUpload(item);
      try {
        if (item.file.size > this.app.me.max_upload_mb * 1024 * 1024) throw new ApiError(413, "request_too_large", "");
        const reply = await upload(item.file, labels, (fraction) => {
          item.progress = fraction;
          this.renderUpload(item);
        });
        item.state = reply.added.length ? "added" : reply.updated.length ? "updated" : "unchanged";
        item.progress = 1;
      } catch (error) {
        if (error.status === 401) return this.app.failed(error);
        item.state = "failed";
        item.message = error.explain(this.app.me || {});
      }
      this.renderUpload(item);
    }
    await this.load();
  }

  renderUpload(item) {
    const ok = ["added", "updated", "unchanged"].includes(item.state);
    const result = item.state === "failed" ? t("upload.failed", { message: item.message }) : t(`upload.${item.state}`);
    item.row.replaceChildren(
      el("span", {}, item.file.name),
      el("progress", { max: 1, value: item.progress, "aria-label": t("upload.progress", { name: item.file.name }) }),
      el("span", { className: ok ? "ok" : item.state === "failed" ? "failed" : "" }, result));
  }
}
