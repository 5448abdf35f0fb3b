// The OpenAI Agents SDK for JavaScript (`@openai/agents`, pinned in tests/peers) against aiproxy's
// Responses API with its default model settings (run by tests/sdk.rs, copied into .test-peers so
// the pinned packages resolve). Usage: node agents_node.mjs <base_url> (ends with /v1; assistant
// `demo` with the demo MCP server, on the mock backend or a mock-like fake upstream).
import { Agent, run, tool, setDefaultOpenAIClient, setTracingDisabled } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";

setTracingDisabled(true);
setDefaultOpenAIClient(new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0, timeout: 30000 }));

function check(cond, msg) {
  if (!cond) {
    console.error("FAIL:", msg);
    process.exit(1);
  }
}

const calls = [];
const getWeather = tool({
  name: "get_weather",
  description: "Current weather for a city.",
  parameters: z.object({ location: z.string() }),
  execute: async ({ location }) => {
    calls.push(location);
    return `sunny in ${location}`;
  },
});
const agent = new Agent({ name: "demo", model: "demo", instructions: "You are helpful.", tools: [getWeather] });

// The assistant's MCP tool runs server-side; the agent sees the mcp_call item and the answer.
let r = await run(agent, "what is 2 + 3?");
check(r.finalOutput === "2 + 3 = 5.", `mcp round: ${JSON.stringify(r.finalOutput)}`);
check(
  r.newItems.some((i) => i.rawItem?.type === "hosted_tool_call" && i.rawItem?.providerData?.type === "mcp_call"),
  `no mcp_call item: ${JSON.stringify(r.newItems.map((i) => i.rawItem))}`,
);

// The agent's own function tool: called by the model, run by the SDK, answered.
r = await run(agent, "What's the weather in Paris?");
check(JSON.stringify(calls) === '["Paris"]', `tool calls: ${calls}`);
check(String(r.finalOutput).includes("sunny in Paris"), `function tool: ${r.finalOutput}`);

// The next turn with the whole history as input (mcp_call and function items included).
const r2 = await run(agent, [...r.history, { role: "user", content: "echo bye" }]);
check(r2.finalOutput === "The echo tool returned: bye", `second turn: ${r2.finalOutput}`);

// A history holding an mcp_call item (the SDK sends it back without its output).
const r3 = await run(agent, [...(await run(agent, "what is 2 + 3?")).history, { role: "user", content: "echo again" }]);
check(r3.finalOutput === "The echo tool returned: again", `after mcp history: ${r3.finalOutput}`);

// Streamed runs.
for (const [question, want] of [
  ["what is 2 + 3?", "2 + 3 = 5."],
  ["What's the weather in Oslo?", "sunny in Oslo"],
]) {
  const s = await run(agent, question, { stream: true });
  let deltas = "";
  for await (const ev of s) {
    if (ev.type === "raw_model_stream_event" && ev.data.type === "output_text_delta") deltas += ev.data.delta;
  }
  await s.completed;
  check(String(s.finalOutput).includes(want), `streamed: ${s.finalOutput}`);
  check(deltas.length > 0, "no text deltas streamed");
}
check(JSON.stringify(calls) === '["Paris","Oslo"]', `tool calls: ${calls}`);
console.log("ok");
