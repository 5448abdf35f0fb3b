// The Vercel AI SDK (`ai` + `@ai-sdk/openai`, pinned in tests/peers) against aiproxy with the
// default provider: `openai('demo')` speaks the Responses API, configured only through
// OPENAI_BASE_URL and OPENAI_API_KEY (run by tests/sdk.rs, copied into .test-peers so the pinned
// packages resolve). Assistant `demo` with the demo MCP server, on the mock backend or a
// mock-like fake upstream. Exits non-zero on the first failed check.
import { openai } from "@ai-sdk/openai";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";

function check(cond, msg) {
  if (!cond) {
    console.error("FAIL:", msg);
    process.exit(1);
  }
}

const model = openai("demo");
const calls = [];
const tools = {
  get_weather: tool({
    description: "Current weather for a city.",
    inputSchema: z.object({ location: z.string() }),
    execute: async ({ location }) => {
      calls.push(location);
      return `sunny in ${location}`;
    },
  }),
};

// generateText with a server-side MCP tool round
let r = await generateText({ model, prompt: "what is 2 + 3?", maxRetries: 0 });
check(r.text.includes("2 + 3 = 5."), `generateText: ${JSON.stringify(r.text)}`);
check(r.finishReason === "stop", `finishReason ${r.finishReason}`);
check(r.usage.totalTokens > 0, `usage ${JSON.stringify(r.usage)}`);

// generateText with a client function tool, run by the SDK, and the follow-up step
r = await generateText({
  model,
  prompt: "What's the weather in Paris?",
  tools,
  stopWhen: stepCountIs(3),
  maxRetries: 0,
});
check(JSON.stringify(calls) === '["Paris"]', `tool calls: ${calls}`);
check(r.steps.length === 2, `steps: ${r.steps.length}`);
check(r.steps[0].finishReason === "tool-calls", `first step: ${r.steps[0].finishReason}`);
check(r.text.includes("sunny in Paris"), `after tool: ${JSON.stringify(r.text)}`);

// A multi-turn conversation from the SDK's own response messages
const again = await generateText({
  model,
  messages: [{ role: "user", content: "What's the weather in Paris?" }, ...r.response.messages, { role: "user", content: "echo bye" }],
  tools,
  stopWhen: stepCountIs(3),
  maxRetries: 0,
});
check(again.text.includes("The echo tool returned: bye"), `second turn: ${JSON.stringify(again.text)}`);

// streamText with the MCP tool round
let s = streamText({ model, prompt: "what is 2 + 3?", maxRetries: 0 });
let streamed = "";
for await (const t of s.textStream) streamed += t;
check(streamed.includes("2 + 3 = 5."), `streamText: ${JSON.stringify(streamed)}`);
check((await s.text) === streamed, "text != streamed text");
check((await s.finishReason) === "stop", `stream finishReason ${await s.finishReason}`);

// streamText with the client function tool
s = streamText({ model, prompt: "What's the weather in Oslo?", tools, stopWhen: stepCountIs(3), maxRetries: 0 });
const kinds = new Set();
for await (const part of s.fullStream) {
  kinds.add(part.type);
  check(part.type !== "error", `stream error: ${JSON.stringify(part.error?.message ?? part)}`);
}
check(kinds.has("tool-call") && kinds.has("tool-result"), `parts: ${[...kinds]}`);
check((await s.text).includes("sunny in Oslo"), `streamed after tool: ${await s.text}`);
check(JSON.stringify(calls) === '["Paris","Oslo"]', `tool calls: ${calls}`);
console.log("ok");
