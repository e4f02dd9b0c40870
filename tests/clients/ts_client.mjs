// Drives a Gig'MCP profile endpoint with an official TypeScript SDK client.
// Usage: node ts_client.mjs <v1|v2> <url> <token>
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { createRequire } from 'node:module';
import path from 'node:path';

const [flavour, url, token] = process.argv.slice(2);
const peers = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../peers/node_modules');
const require = createRequire(path.join(peers, 'noop.js'));

async function load() {
  if (flavour === 'v1') {
    const { Client } = await import(require.resolve('@modelcontextprotocol/sdk/client/index.js'));
    const { StreamableHTTPClientTransport } = await import(
      require.resolve('@modelcontextprotocol/sdk/client/streamableHttp.js'));
    return { Client, StreamableHTTPClientTransport };
  }
  return await import(require.resolve('@modelcontextprotocol/client'));
}

const { Client, StreamableHTTPClientTransport } = await load();
const client = new Client({ name: `gigmcp-test-${flavour}`, version: '1.0.0' }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
const tools = await client.listTools();
const echo = await client.callTool({ name: 'everything_echo', arguments: { message: `ts-${flavour}` } });
const prompts = await client.listPrompts();
const resources = await client.listResources();
const first = resources.resources[0];
const read = first ? await client.readResource({ uri: first.uri }) : null;
console.log(JSON.stringify({
  tools: tools.tools.map((t) => t.name),
  echo: echo.content.map((c) => c.text).join(''),
  prompts: prompts.prompts.map((p) => p.name),
  resources: resources.resources.map((r) => r.uri),
  readOk: !!(read && read.contents && read.contents.length),
  protocolVersion: transport.protocolVersion ?? null,
}));
await client.close();
