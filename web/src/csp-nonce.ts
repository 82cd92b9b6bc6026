// Tag every <style> element this page creates with the nonce the server put
// into <meta property="csp-nonce"> (Vite's html.cspNonce). Chromium hides
// the attribute after parsing; the `nonce` property keeps the value.
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

export {};
