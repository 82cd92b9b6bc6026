import { describe, expect, it } from "vitest";
import { parseAnsi, segmentProps } from "./ansi";

describe("ANSI output", () => {
  it("keeps colours and styles as segments and drops other control sequences", () => {
    const s = parseAnsi("plain \x1b[31mred\x1b[0m \x1b[1;92mbold green\x1b[22m not bold\x1b[m\x1b]0;title\x07\x1b[2Kdone\r\n");
    expect(s.map((x) => x.text).join("")).toBe("plain red bold green not bolddone\r\n");
    expect(s.find((x) => x.text === "red")!.style).toEqual({ fg: "a1" });
    expect(s.find((x) => x.text === "bold green")!.style).toEqual({ fg: "a10", bold: true });
    expect(s.find((x) => x.text === " not bold")!.style).toEqual({ fg: "a10" });
    expect(s.find((x) => x.text.startsWith("done"))!.style).toEqual({});
  });

  it("reads 256 and true colours, backgrounds and inverse", () => {
    const [a, b, c] = parseAnsi("\x1b[38;5;196ma\x1b[0;48;2;1;2;3mb\x1b[0;7;34mc");
    expect(a!.style.fg).toBe("#ff0000");
    expect(b!.style.bg).toBe("#010203");
    expect(segmentProps(b!.style).style).toEqual({ backgroundColor: "#010203" });
    expect(segmentProps(c!.style).class).toBe("f-a-bg b-a4");
    expect(segmentProps({ fg: "a3", underline: true }).class).toBe("f-a3 a-underline");
  });

  it("drops a lone carriage return (progress bars) but keeps line ends", () => {
    expect(parseAnsi("50%\r100%\r\n").map((x) => x.text).join("")).toBe("50%100%\r\n");
  });

  it("survives sequences cut off at the start of the kept buffer", () => {
    expect(parseAnsi("[31mtext").map((x) => x.text).join("")).toBe("[31mtext");
    expect(parseAnsi("text\x1b[3").map((x) => x.text).join("")).toBe("text\x1b[3");
  });
});
