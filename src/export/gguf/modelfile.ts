// An Ollama Modelfile for an exported GGUF: FROM the model, ADAPTER the LoRA, and the chat
// template as TEMPLATE. Ollama's TEMPLATE is a Go text/template, not Jinja, so the Jinja
// template is not copied: it is rendered on probe conversations and, when every message is
// "fixed text + content + fixed text" per role (the shape of Llama 3, ChatML, Qwen2 and most
// chat templates), written as the Go template that produces the same text; the probe
// conversations are checked against it. A template with other logic gets no TEMPLATE line
// (Ollama then uses the one it finds in the GGUF) and the reason is returned.

/** Renders a conversation with the model's Jinja chat template (Tokenizer.applyChatTemplate). */
export type ChatRenderer = (
  messages: { role: string; content: string }[],
  addGenerationPrompt: boolean,
) => string;

const ROLES = ["system", "user", "assistant"] as const;
const MARK = [
  "\u0001lorakit-1\u0001",
  "\u0001lorakit-2\u0001",
  "\u0001lorakit-3\u0001",
  "\u0001lorakit-4\u0001",
];

export interface GoTemplate {
  template: string | null;
  /** Why no template could be written (null when one was). */
  reason: string | null;
}

function lcp(xs: string[]): string {
  let p = xs[0] ?? "";
  for (const x of xs) while (!x.startsWith(p)) p = p.slice(0, -1);
  return p;
}

/**
 * The Go template equivalent of a Jinja chat template, found by rendering probe conversations.
 * `bosToken` is dropped from the start when the runtime adds BOS itself (`addBos`).
 */
export function chatTemplateToGo(
  render: ChatRenderer,
  opts: { bosToken?: string | null; addBos?: boolean | null } = {},
): GoTemplate {
  const wrap: Partial<Record<(typeof ROLES)[number], { pre: string; post: string }>> = {};
  try {
    for (const role of ROLES) {
      let r: string;
      try {
        r = render([{ role, content: MARK[0] }], false);
      } catch {
        if (role === "user") throw new Error("it cannot render a single user message");
        continue; // e.g. a template without a system role
      }
      const at = r.indexOf(MARK[0]);
      if (at < 0 || r.indexOf(MARK[0], at + 1) >= 0)
        throw new Error(`a ${role} message's content does not appear once`);
      wrap[role] = { pre: r.slice(0, at), post: r.slice(at + MARK[0].length) };
    }
    const pres = Object.values(wrap).map((w) => w.pre);
    const common = lcp(pres);
    const genBase = render([{ role: "user", content: MARK[0] }], false);
    const genFull = render([{ role: "user", content: MARK[0] }], true);
    if (!genFull.startsWith(genBase)) throw new Error("the generation prompt is not appended at the end");
    const gen = genFull.slice(genBase.length);
    const probe = [
      { role: "user", content: MARK[0] },
      { role: "assistant", content: MARK[1] },
      { role: "user", content: MARK[2] },
      { role: "assistant", content: MARK[3] },
    ];
    if (wrap.system) probe.unshift({ role: "system", content: "\u0001lorakit-s\u0001" });
    const want = render(probe, true);
    // The start of the text (BOS, a preamble) is the longest common prefix that reproduces the probe.
    for (let n = common.length; n >= 0; n--) {
      const start = common.slice(0, n);
      const piece = (role: string) => {
        const w = wrap[role as (typeof ROLES)[number]]!;
        return { pre: w.pre.slice(n), post: w.post };
      };
      const got = start + probe.map((m) => piece(m.role).pre + m.content + piece(m.role).post).join("") + gen;
      if (got !== want) continue;
      let head = start;
      if (opts.addBos && opts.bosToken && head.startsWith(opts.bosToken))
        head = head.slice(opts.bosToken.length);
      const parts = [head, "{{ range .Messages }}"];
      Object.keys(wrap).forEach((role, i) => {
        const p = piece(role);
        parts.push(`{{ ${i ? "else if" : "if"} eq .Role "${role}" }}${p.pre}{{ .Content }}${p.post}`);
      });
      parts.push("{{ end }}{{ end }}", gen);
      const literal = [head, gen, ...Object.keys(wrap).flatMap((r) => [piece(r).pre, piece(r).post])].join(
        "",
      );
      if (literal.includes("{{") || literal.includes('"""'))
        throw new Error(
          'its fixed text holds "{{" or """, which a Modelfile TEMPLATE cannot carry as written',
        );
      return { template: parts.join(""), reason: null };
    }
    throw new Error("its messages are not fixed text around the content (it has per-position logic)");
  } catch (e) {
    return {
      template: null,
      reason: `the chat template was not translated to Ollama's Go template: ${(e as Error).message}`,
    };
  }
}

/**
 * The Modelfile text: FROM `from`, ADAPTER `adapter` when given, TEMPLATE when one is given.
 *
 * @example
 * modelfile({ from: "./base.gguf", adapter: "./adapter.gguf", template: '{{ .Prompt }}' });
 */
export function modelfile(opts: {
  from: string;
  adapter?: string | null;
  template?: string | null;
  comment?: string | null;
}): string {
  const lines: string[] = [];
  if (opts.comment) for (const l of opts.comment.split("\n")) lines.push(`# ${l}`);
  lines.push(`FROM ${opts.from}`);
  if (opts.adapter) lines.push(`ADAPTER ${opts.adapter}`);
  if (opts.template) lines.push(`TEMPLATE """${opts.template}"""`);
  return `${lines.join("\n")}\n`;
}
