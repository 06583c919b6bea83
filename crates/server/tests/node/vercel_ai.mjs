// The Vercel AI SDK's default OpenAI model — `openai("…")`, which speaks the Responses API —
// against the gateway: text, a stream, a tool it executes over two steps, and an object.
// Prints one JSON object with what it saw.
//
// Usage: SHOPFLOOR_BASE_URL=…/v1 SHOPFLOOR_API_KEY=… SHOPFLOOR_MODEL=… node vercel_ai.mjs
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const provider = createOpenAI({ baseURL: env("SHOPFLOOR_BASE_URL"), apiKey: env("SHOPFLOOR_API_KEY") });
const model = provider(env("SHOPFLOOR_MODEL"));
const seen = {};

const text = await generateText({ model, system: "Be brief.", prompt: "Hello", maxOutputTokens: 64 });
seen.text = {
  text: text.text,
  finishReason: text.finishReason,
  inputTokens: text.usage.inputTokens,
  outputTokens: text.usage.outputTokens,
  responseId: text.response.id,
};

const stream = streamText({ model, prompt: "Hello" });
const pieces = [];
for await (const piece of stream.textStream) pieces.push(piece);
seen.stream = { text: pieces.join(""), pieces: pieces.length, finishReason: await stream.finishReason };

const called = [];
const withTools = await generateText({
  model,
  prompt: "Weather in Paris?",
  tools: {
    get_weather: tool({
      description: "The weather in a city",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
        additionalProperties: false,
      }),
      execute: async ({ city }) => {
        called.push(city);
        return "sunny, 21C";
      },
    }),
  },
  stopWhen: stepCountIs(3),
});
seen.tools = { called, text: withTools.text, steps: withTools.steps.length };

const object = await generateObject({
  model,
  prompt: "Classify: billing",
  schema: jsonSchema({
    type: "object",
    properties: { label: { type: "string" } },
    required: ["label"],
    additionalProperties: false,
  }),
});
seen.object = object.object;
console.log(JSON.stringify(seen));
