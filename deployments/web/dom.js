// Small DOM helpers shared by the page's modules.

/** An element with attributes (class, data- and aria- ones, listeners for "on..." names) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "hidden" || name === "disabled" || name === "checked" || name === "value") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let ids = 0;
/** A page-unique id for label/for and aria-labelledby pairs. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** `text` with each (case-insensitive) occurrence of `query` in a <mark>, as nodes. */
export function highlighted(text, query) {
  if (!query) return [document.createTextNode(text)];
  const nodes = [];
  const lower = text.toLowerCase();
  const needle = query.toLowerCase();
  let from = 0;
  let at;
  while ((at = lower.indexOf(needle, from)) >= 0) {
    if (at > from) nodes.push(document.createTextNode(text.slice(from, at)));
    nodes.push(el("mark", {}, text.slice(at, at + needle.length)));
    from = at + needle.length;
  }
  if (from < text.length) nodes.push(document.createTextNode(text.slice(from)));
  return nodes;
}

/** Save `text` as a file named `name` (a blob URL and the download attribute: nothing is sent). */
export function saveFile(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Speakers' colour classes, in order of first appearance (8 colours, then again from the first). */
export class SpeakerColours {
  constructor() {
    this.order = new Map();
  }

  index(label) {
    if (!this.order.has(label)) this.order.set(label, this.order.size);
    return this.order.get(label) % 8;
  }

  className(label) {
    return `speaker speaker-c${this.index(label)}`;
  }
}
