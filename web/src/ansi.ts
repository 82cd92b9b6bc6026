// Task output with its colours: the SGR escapes (colour, bold, underline…)
// become styled segments; every other control sequence (cursor moves,
// titles, a lone carriage return) is dropped. Pure,
// unit-tested in ansi.test.ts; the view renders the segments as spans
// (classes for the 16 named colours, CSSOM styles for 256 and true colour:
// nothing goes through innerHTML, so the CSP needs nothing new).

export interface Style {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
  inverse?: boolean;
}

export interface Segment {
  text: string;
  style: Style;
}

// CSI (captured: its parameters and final byte), OSC, other ESC pairs, a lone CR.
// eslint-disable-next-line no-control-regex
const SEQ = /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\r(?!\n)/g;

/** 0–15 are named (classes `a0`…`a15`); 16–255 the xterm cube and greys. */
function color256(n: number): string {
  if (n < 16) return `a${n}`;
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return rgb(v[Math.floor(i / 36)]!, v[Math.floor(i / 6) % 6]!, v[i % 6]!);
  }
  const g = 8 + (n - 232) * 10;
  return rgb(g, g, g);
}

function rgb(r: number, g: number, b: number): string {
  const h = (x: number) => Math.max(0, Math.min(255, x)).toString(16).padStart(2, "0");
  return `#${h(r)}${h(g)}${h(b)}`;
}

/** Apply one SGR parameter list to `s` (returns the new style). */
function sgr(params: string, s: Style): Style {
  const p = params === "" ? [0] : params.split(/[;:]/).map((x) => (x === "" ? 0 : Number(x)));
  let st = { ...s };
  for (let i = 0; i < p.length; i++) {
    const n = p[i]!;
    if (n === 0) st = {};
    else if (n === 1) st.bold = true;
    else if (n === 2) st.dim = true;
    else if (n === 3) st.italic = true;
    else if (n === 4) st.underline = true;
    else if (n === 7) st.inverse = true;
    else if (n === 22) st.bold = st.dim = false;
    else if (n === 23) st.italic = false;
    else if (n === 24) st.underline = false;
    else if (n === 27) st.inverse = false;
    else if (n >= 30 && n <= 37) st.fg = `a${n - 30}`;
    else if (n >= 90 && n <= 97) st.fg = `a${n - 90 + 8}`;
    else if (n >= 40 && n <= 47) st.bg = `a${n - 40}`;
    else if (n >= 100 && n <= 107) st.bg = `a${n - 100 + 8}`;
    else if (n === 39) delete st.fg;
    else if (n === 49) delete st.bg;
    else if (n === 38 || n === 48) {
      let c: string | undefined;
      if (p[i + 1] === 5 && p[i + 2] !== undefined) {
        c = color256(p[i + 2]!);
        i += 2;
      } else if (p[i + 1] === 2 && p[i + 4] !== undefined) {
        c = rgb(p[i + 2]!, p[i + 3]!, p[i + 4]!);
        i += 4;
      }
      if (c) {
        if (n === 38) st.fg = c;
        else st.bg = c;
      }
    }
  }
  for (const k of Object.keys(st) as (keyof Style)[]) if (st[k] === false) delete st[k];
  return st;
}

/** Split output into styled runs of text. */
export function parseAnsi(input: string): Segment[] {
  const out: Segment[] = [];
  let style: Style = {};
  let last = 0;
  const push = (text: string) => {
    if (!text) return;
    const prev = out[out.length - 1];
    if (prev && prev.style === style) prev.text += text;
    else out.push({ text, style });
  };
  for (const m of input.matchAll(SEQ)) {
    push(input.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[2] === "m") style = sgr(m[1] ?? "", style);
  }
  push(input.slice(last));
  return out;
}

/** The class names and inline colours of a segment's span. */
export function segmentProps(st: Style): { class: string; style: Record<string, string> } {
  let fg = st.fg;
  let bg = st.bg;
  if (st.inverse) [fg, bg] = [bg ?? "a-bg", fg ?? "a-fg"];
  const cls: string[] = [];
  const style: Record<string, string> = {};
  if (fg?.startsWith("#")) style.color = fg;
  else if (fg) cls.push(`f-${fg}`);
  if (bg?.startsWith("#")) style.backgroundColor = bg;
  else if (bg) cls.push(`b-${bg}`);
  if (st.bold) cls.push("a-bold");
  if (st.dim) cls.push("a-dim");
  if (st.italic) cls.push("a-italic");
  if (st.underline) cls.push("a-underline");
  return { class: cls.join(" "), style };
}
