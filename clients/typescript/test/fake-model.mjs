// A local stand-in for the OpenAI Responses API, so that `run()` of @openai/agents goes through
// its real OpenAI client and model code without a network. `script` is a list of turns; each
// turn is the list of output items to answer one `POST /v1/responses` with. Every request body
// is kept in `calls`.
import { once } from "node:events";
import http from "node:http";

export async function startFakeModel(script) {
  const calls = [];
  const server = http.createServer(async (request, response) => {
    let body = "";
    for await (const chunk of request) body += chunk;
    const call = JSON.parse(body);
    calls.push({ path: request.url, body: call });
    const output = script.shift();
    if (request.url !== "/v1/responses" || output === undefined || call.stream) {
      response.writeHead(400, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ error: { message: `unexpected call ${request.url}` } }));
      return;
    }
    response.writeHead(200, { "Content-Type": "application/json" });
    response.end(
      JSON.stringify({
        id: `resp_${calls.length}`,
        object: "response",
        created_at: 1_700_000_000,
        status: "completed",
        model: call.model,
        output,
        usage: {
          input_tokens: 10,
          output_tokens: 5,
          total_tokens: 15,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens_details: { reasoning_tokens: 0 },
        },
      }),
    );
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    baseURL: `http://127.0.0.1:${server.address().port}/v1`,
    calls,
    enqueue: (...turns) => script.push(...turns),
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

/** An assistant message as the model answers it. */
export function message(text, id) {
  return {
    type: "message",
    id,
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [] }],
  };
}

/** A function call as the model answers it. */
export function functionCall(name, args, callId, id) {
  return { type: "function_call", id, call_id: callId, name, arguments: args, status: "completed" };
}
