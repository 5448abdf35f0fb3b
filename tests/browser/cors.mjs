// CORS in a real browser (tests/browser.rs): Debian's chromium, headless, driven by
// playwright-core. Serves a page on PAGE_PORT (another origin than the gateway) and calls the
// gateway from it with fetch: preflighted POSTs with a key, a stream read chunk by chunk, error
// answers whose headers must be readable. Prints one JSON line of what the page saw.
//
//   node cors.mjs PLAYWRIGHT_CORE_URL PAGE_PORT GATEWAY_URL KEY
import http from "node:http";

const [pwUrl, pagePort, gateway, key] = process.argv.slice(2);
const { chromium } = await import(pwUrl);

const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end("<!doctype html><title>cors</title><p>page on another origin</p>");
});
await new Promise((ok) => server.listen(Number(pagePort), "127.0.0.1", ok));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  timeout: 60000,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${pagePort}/`);
  const seen = await page.evaluate(
    async ({ gateway, key }) => {
      const out = {};
      const chat = (body, headers) =>
        fetch(`${gateway}/v1/chat/completions`, {
          method: "POST",
          headers: { "Content-Type": "application/json", ...headers },
          body: JSON.stringify(body),
        });
      const ask = { model: "calc", messages: [{ role: "user", content: "hi" }] };
      const auth = { Authorization: `Bearer ${key}`, "x-stainless-lang": "js" };
      let r = await chat(ask, auth);
      out.plain = {
        status: r.status,
        requestId: r.headers.get("X-Request-Id"),
        content: (await r.json()).choices[0].message.content,
      };
      r = await chat({ ...ask, stream: true }, auth);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let raw = "";
      let reads = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        reads += 1;
        raw += decoder.decode(value, { stream: true });
      }
      const text = raw
        .split("\n")
        .filter((l) => l.startsWith("data: {"))
        .map((l) => JSON.parse(l.slice(6)))
        .map((e) => (e.choices[0] && e.choices[0].delta.content) || "")
        .join("");
      out.stream = {
        status: r.status,
        type: r.headers.get("Content-Type"),
        requestId: r.headers.get("X-Request-Id"),
        text,
        done: raw.includes("data: [DONE]"),
        reads,
      };
      r = await chat(ask, auth);
      out.limited = { status: r.status, retryAfter: r.headers.get("Retry-After"), requestId: r.headers.get("X-Request-Id") };
      r = await chat(ask, {});
      out.noKey = { status: r.status, type: (await r.json()).error.type };
      r = await fetch(`${gateway}/v1/models`, { headers: { "api-key": key } });
      out.models = { status: r.status, id: (await r.json()).data[0].id };
      return out;
    },
    { gateway, key },
  );
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
  server.close();
}
