// The official OpenAI Node SDK (pinned in tests/peers) against aiproxy's Responses API
// (run by tests/sdk.rs). Usage: node responses_node.mjs <base_url> <openai module URL>
// (base_url ends with /v1; assistant `demo` on the mock backend with the demo MCP server; the
// module is .test-peers/node_modules/openai/index.mjs). Exits non-zero on failure.
const { default: OpenAI } = await import(process.argv[3]);

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0, timeout: 30000 });

function check(cond, msg) {
  if (!cond) {
    console.error("FAIL:", msg);
    process.exit(1);
  }
}

const shape = (resp) =>
  JSON.stringify(
    resp.output.map(({ id, call_id, ...rest }) => ({
      ...rest,
      content: rest.content?.map(({ parsed, ...p }) => p),
    })),
  );

// create with an MCP tool round
const r = await client.responses.create({ model: "demo", input: "what is 2 + 3?" });
check(r.status === "completed", `status ${r.status}`);
check(r.output.map((i) => i.type).join() === "message,mcp_call,message", shape(r));
check(r.output[1].server_label === "demo" && r.output[1].output === "5", JSON.stringify(r.output[1]));
check(r.output_text.includes("2 + 3 = 5."), r.output_text);

// stream helper: same final response
const stream = client.responses.stream({ model: "demo", input: "what is 2 + 3?" });
const types = [];
let deltas = "";
for await (const ev of stream) {
  types.push(ev.type);
  if (ev.type === "response.output_text.delta") deltas += ev.delta;
}
const final = await stream.finalResponse();
check(types[0] === "response.created" && types.at(-1) === "response.completed", types.join());
check(final.output_text === r.output_text, `${final.output_text} != ${r.output_text}`);
check(deltas === r.output_text, deltas);
check(shape(final) === shape(r), `${shape(final)} != ${shape(r)}`);

// function tool round trip
const tools = [
  {
    type: "function",
    name: "get_weather",
    parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
    strict: false,
  },
];
const first = await client.responses.create({ model: "demo", input: "What's the weather in Paris?", tools });
const call = first.output.at(-1);
check(call.type === "function_call" && call.name === "get_weather", JSON.stringify(first.output));
check(JSON.parse(call.arguments).location === "Paris", call.arguments);
const second = await client.responses.create({
  model: "demo",
  previous_response_id: first.id,
  tools,
  input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }],
});
check(second.output_text.includes("sunny"), second.output_text);

// errors as SDK exceptions
try {
  await client.responses.create({ model: "demo", input: "x", previous_response_id: "resp_nope" });
  check(false, "unknown previous_response_id accepted");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.code === "previous_response_not_found", String(e));
}
console.log("ok");
