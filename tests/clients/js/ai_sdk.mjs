// The Vercel AI SDK against Keyway: one provider, one call shape, one JSON line on stdout.
//
//   node ai_sdk.mjs <provider> <case> [--store-default]
//
// provider: responses (openai(model), the Responses API), chat (openai.chat(model)),
//           anthropic (anthropic(model))
// case:     text (generateText), stream (streamText), tools (generateText with a tool and
//           stopWhen), stream-tools (streamText with a tool), object (generateObject, a zod schema),
//           conversation (two turns: the second sends the first answer back, as a chat app does)
// env:      KEYWAY_URL (the gateway's root URL), KEYWAY_KEY (a client key), KEYWAY_ALIAS
//
// The Responses provider sends `store: false` unless --store-default is given: the AI SDK's
// default (`store: true`) makes it send `item_reference`s for earlier output, which Keyway
// refuses on Anthropic deployments (README, "Responses API").
//
// The line: {"ok": true, ...what the call returned} or {"ok": false, "error": {...}}; the exit
// status is 0 either way once the line is written, so the caller reads one shape.

import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [providerName, caseName, ...flags] = process.argv.slice(2);
const url = process.env.KEYWAY_URL;
const apiKey = process.env.KEYWAY_KEY;
const alias = process.env.KEYWAY_ALIAS;
if (!providerName || !caseName || !url || !apiKey || !alias) {
  console.error("usage: KEYWAY_URL=... KEYWAY_KEY=... KEYWAY_ALIAS=... node ai_sdk.mjs <provider> <case>");
  process.exit(2);
}

function languageModel() {
  const baseURL = `${url.replace(/\/$/, "")}/v1`;
  if (providerName === "responses") return createOpenAI({ baseURL, apiKey })(alias);
  if (providerName === "chat") return createOpenAI({ baseURL, apiKey }).chat(alias);
  if (providerName === "anthropic") return createAnthropic({ baseURL, apiKey })(alias);
  throw new Error(`unknown provider ${providerName}`);
}

const providerOptions =
  providerName === "responses" && !flags.includes("--store-default")
    ? { openai: { store: false } }
    : undefined;

// An enum makes the fake provider's arguments predictable: it fills a string enum with its
// first value, so the test knows which city the model asks for.
const weather = tool({
  description: "The current weather in a city",
  inputSchema: z.object({ city: z.enum(["Paris", "London"]) }),
  execute: async ({ city }) => ({ city, temperature_c: 21 }),
});

const person = z.object({
  name: z.string(),
  age: z.number().int(),
  tags: z.array(z.string()),
});

const common = {
  model: languageModel(),
  maxRetries: 0,
  providerOptions,
};

function summarizeSteps(steps) {
  return steps.map((step) => ({
    finishReason: step.finishReason,
    text: step.text,
    toolCalls: step.toolCalls.map((c) => ({ toolName: c.toolName, input: c.input })),
    toolResults: step.toolResults.map((r) => ({ toolName: r.toolName, output: r.output })),
  }));
}

async function run() {
  if (caseName === "text") {
    const result = await generateText({ ...common, prompt: "Say hello" });
    return {
      text: result.text,
      finishReason: result.finishReason,
      usage: result.usage,
      warnings: result.warnings,
    };
  }
  if (caseName === "stream") {
    let streamError = null;
    const result = streamText({
      ...common,
      prompt: "Say hello",
      onError: ({ error }) => {
        streamError = error;
      },
    });
    const deltas = [];
    for await (const delta of result.textStream) deltas.push(delta);
    if (streamError) throw streamError;
    return {
      text: await result.text,
      deltas,
      finishReason: await result.finishReason,
      usage: await result.usage,
      warnings: await result.warnings,
    };
  }
  if (caseName === "tools") {
    const result = await generateText({
      ...common,
      prompt: "What is the weather in Paris?",
      tools: { weather },
      stopWhen: stepCountIs(4),
    });
    return { text: result.text, finishReason: result.finishReason, steps: summarizeSteps(result.steps) };
  }
  if (caseName === "stream-tools") {
    let streamError = null;
    const result = streamText({
      ...common,
      prompt: "What is the weather in Paris?",
      tools: { weather },
      stopWhen: stepCountIs(4),
      onError: ({ error }) => {
        streamError = error;
      },
    });
    const kinds = new Set();
    for await (const part of result.fullStream) kinds.add(part.type);
    if (streamError) throw streamError;
    return {
      text: await result.text,
      finishReason: await result.finishReason,
      steps: summarizeSteps(await result.steps),
      partTypes: [...kinds].sort(),
    };
  }
  if (caseName === "object") {
    const result = await generateObject({
      ...common,
      schema: person,
      schemaName: "person",
      prompt: "Invent a person.",
    });
    return { object: result.object, finishReason: result.finishReason, warnings: result.warnings };
  }
  if (caseName === "conversation") {
    const first = await generateText({ ...common, prompt: "Say hello" });
    const messages = [
      { role: "user", content: "Say hello" },
      ...first.response.messages,
      { role: "user", content: "Say hello again" },
    ];
    const second = await generateText({ ...common, messages });
    return { texts: [first.text, second.text], finishReason: second.finishReason };
  }
  throw new Error(`unknown case ${caseName}`);
}

function describe(error) {
  // APICallError carries the HTTP exchange; NoObjectGeneratedError the text that did not parse
  const cause = error?.cause ?? error?.lastError;
  return {
    name: error?.name,
    message: String(error?.message ?? error),
    statusCode: error?.statusCode ?? cause?.statusCode,
    url: error?.url ?? cause?.url,
    responseBody: error?.responseBody ?? cause?.responseBody,
    text: error?.text,
    cause: cause ? { name: cause.name, message: String(cause.message ?? cause) } : undefined,
  };
}

try {
  console.log(JSON.stringify({ ok: true, ...(await run()) }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: describe(error) }));
}
