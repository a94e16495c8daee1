// Small DOM helpers shared by the views.

/** Show `message` in `element`, or hide it when there is none. */
export function show(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

/** A new element: `el("a", {href: "#x", className: "cite"}, "text", child)`; `data-*`/`aria-*` keys become
 * attributes, other keys properties. Text is always set as text, never parsed as HTML. */
export function el(tag, properties = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (value === undefined || value === null) continue;
    if (name.startsWith("data-") || name.startsWith("aria-") || name === "role") element.setAttribute(name, value);
    else element[name] = value;
  }
  element.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}
