// Claude Code (`claude -p`) against Keyway: one run, summarised as one JSON line on stdout.
//
//   node claude_code.mjs <case>
//
// case: text   `claude -p` with its default tools, plain text output
//       tools  only the Read tool (a file in a temp dir to read), `--output-format stream-json
//              --verbose`: every event of the agent loop, tool calls and results included
// env:  KEYWAY_URL (the gateway's root URL), KEYWAY_KEY (a client key), KEYWAY_ALIAS
//
// Claude Code runs with a temp HOME, in a temp working directory, with telemetry, error
// reporting, auto-updates and other non-essential traffic off, so the gateway is the only
// server it talks to. Permission prompts are answered "no" in -p mode: a tool that needs
// approval is refused, never run.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const caseName = process.argv[2];
const url = process.env.KEYWAY_URL;
const apiKey = process.env.KEYWAY_KEY;
const alias = process.env.KEYWAY_ALIAS;
if (!["text", "tools"].includes(caseName) || !url || !apiKey || !alias) {
  console.error("usage: KEYWAY_URL=... KEYWAY_KEY=... KEYWAY_ALIAS=... node claude_code.mjs text|tools");
  process.exit(2);
}

const here = dirname(fileURLToPath(import.meta.url));
const claude = join(here, "node_modules", ".bin", "claude");
const home = mkdtempSync(join(tmpdir(), "keyway-claude-home-"));
const workdir = mkdtempSync(join(tmpdir(), "keyway-claude-work-"));
writeFileSync(join(workdir, "note.txt"), "The secret word is pelican.\n");

const env = {
  PATH: process.env.PATH,
  HOME: home,
  TMPDIR: process.env.TMPDIR ?? tmpdir(),
  LANG: "C.UTF-8",
  ANTHROPIC_BASE_URL: url,
  ANTHROPIC_API_KEY: apiKey,
  DISABLE_TELEMETRY: "1",
  DISABLE_ERROR_REPORTING: "1",
  DISABLE_AUTOUPDATER: "1",
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
};
const args = ["-p", "", "--model", alias];
if (caseName === "text") {
  args[1] = "Say hello";
} else {
  args[1] = `Read ${join(workdir, "note.txt")} and tell me the secret word.`;
  args.push("--tools", "Read", "--output-format", "stream-json", "--verbose");
  // Without this Claude Code adds a `defer_loading` placeholder tool for its tool search; a
  // model never calls it, but the fake provider calls the first tool it is offered.
  env.ENABLE_TOOL_SEARCH = "false";
}

const run = spawnSync(claude, args, {
  cwd: workdir,
  env,
  encoding: "utf8",
  stdio: ["ignore", "pipe", "pipe"],
  timeout: 90_000,
  maxBuffer: 64 * 1024 * 1024,
});
rmSync(home, { recursive: true, force: true });
rmSync(workdir, { recursive: true, force: true });

const summary = {
  exitCode: run.status,
  signal: run.signal,
  spawnError: run.error ? String(run.error) : undefined,
  stderrTail: (run.stderr ?? "").slice(-2000),
};
if (caseName === "text") {
  summary.ok = run.status === 0;
  summary.result = (run.stdout ?? "").trim();
} else {
  const events = [];
  for (const line of (run.stdout ?? "").split("\n")) {
    if (!line.trim()) continue;
    try {
      events.push(JSON.parse(line));
    } catch {
      events.push({ type: "unparsed", line: line.slice(0, 500) });
    }
  }
  const blocks = (type, role) =>
    events
      .filter((e) => e.type === role && Array.isArray(e.message?.content))
      .flatMap((e) => e.message.content.filter((b) => b.type === type));
  const result = events.findLast((e) => e.type === "result");
  const init = events.find((e) => e.type === "system" && e.subtype === "init");
  summary.ok = run.status === 0 && result?.subtype === "success" && !result?.is_error;
  summary.result = result?.result;
  summary.resultSubtype = result?.subtype;
  summary.numTurns = result?.num_turns;
  summary.initTools = init?.tools;
  summary.initModel = init?.model;
  summary.eventTypes = [...new Set(events.map((e) => (e.subtype ? `${e.type}/${e.subtype}` : e.type)))];
  summary.toolUses = blocks("tool_use", "assistant").map((b) => ({ id: b.id, name: b.name, input: b.input }));
  summary.toolResults = blocks("tool_result", "user").map((b) => ({
    toolUseId: b.tool_use_id,
    isError: Boolean(b.is_error),
    content: typeof b.content === "string" ? b.content : JSON.stringify(b.content),
  }));
  summary.texts = blocks("text", "assistant").map((b) => b.text);
}
console.log(JSON.stringify(summary));
