// One turn of an agent with a ChatstoreSession, in a process of its own: the second process of
// the agents test. Prints the run's final output as JSON.
import { Agent, run, setDefaultOpenAIClient, setTracingDisabled } from "@openai/agents";
import OpenAI from "openai";

import { ChatstoreSession } from "chatstore";

const { MODEL_URL, CHATSTORE_URL, CHATSTORE_TOKEN, SESSION_ID, INPUT } = process.env;
setTracingDisabled(true);
setDefaultOpenAIClient(new OpenAI({ baseURL: MODEL_URL, apiKey: "test-key" }));
const agent = new Agent({ name: "assistant", instructions: "Be brief.", model: "gpt-4.1-mini" });
const session = new ChatstoreSession(SESSION_ID, { baseUrl: CHATSTORE_URL, token: CHATSTORE_TOKEN });
const result = await run(agent, INPUT, { session });
console.log(JSON.stringify(result.finalOutput));
