// Type-checked (never run) against the packed package, as a TypeScript user's code would be:
// the published declarations must say that ChatstoreSession is an Agents SDK Session and that
// the typed client knows the API's routes.
import type { Session } from "@openai/agents";
import { ChatstoreError, ChatstoreSession, createChatstoreClient, type components } from "chatstore";

export const session: Session = new ChatstoreSession("conversation-1", {
  baseUrl: "http://127.0.0.1:8080",
  token: async () => "jwt",
  fetch: (request: Request) => fetch(request),
});

export async function typedClient(): Promise<string | null | undefined> {
  const client = createChatstoreClient({ baseUrl: "http://127.0.0.1:8080", token: "jwt" });
  const { data, error } = await client.GET("/chats/{chat_id}", {
    params: { path: { chat_id: "c1" } },
  });
  if (error) throw new ChatstoreError(error.error.message, { code: error.error.code });
  const chat: components["schemas"]["Chat"] | undefined = data;
  // @ts-expect-error: a route the API does not have is a type error
  await client.GET("/no/such/route");
  return chat?.title;
}
