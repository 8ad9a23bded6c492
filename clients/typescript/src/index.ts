export { ChatstoreSession, type ChatstoreSessionOptions } from "./session.js";
export {
  createChatstoreClient,
  type ChatstoreClient,
  type components,
  type operations,
  type paths,
} from "./client.js";
export { ChatstoreConnectionError, ChatstoreError } from "./errors.js";
export type { ClientOptions, TokenSource } from "./http.js";
