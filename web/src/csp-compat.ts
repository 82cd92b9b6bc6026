// Makes xterm.js work under the server's strict Content-Security-Policy
// (style-src 'self' 'nonce-…', nothing inline), without loosening it:
//
// 1. Every <style> element this page creates gets the nonce the server put
//    into <meta property="csp-nonce"> (Vite's html.cspNonce); xterm.js
//    writes its theme into such elements. Chromium hides the attribute
//    after parsing; the `nonce` property keeps the value.
// 2. `setAttribute("style", …)` from script becomes the equivalent CSSOM
//    assignment (`el.style.cssText`), which the policy allows; xterm.js's
//    DOM renderer styles some cells (selection, true colour) that way.
//    Style attributes in markup stay refused, so injected HTML gains nothing.
const meta = document.querySelector<HTMLMetaElement>('meta[property="csp-nonce"]');
const nonce = meta?.nonce || meta?.getAttribute("nonce") || "";

if (nonce && !nonce.startsWith("__")) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, options?: ElementCreationOptions) {
    const el = create.call(this, tag, options);
    if (tag.toLowerCase() === "style") (el as HTMLStyleElement).nonce = nonce;
    return el;
  } as typeof Document.prototype.createElement;
}

const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function (this: Element, name: string, value: string) {
  if (name.toLowerCase() === "style" && "style" in this) {
    (this as HTMLElement).style.cssText = value;
    return;
  }
  setAttribute.call(this, name, value);
};

export {};
