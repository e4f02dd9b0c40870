// A small real MCP server (TypeScript SDK v1) that calls an HTTP API with its key using
// Node's own fetch, which ignores HTTPS_PROXY on Node 20: the egress tests use it to show
// that such a server still meets the proxy (transparent interception, the proxy's DNS).
// It lives here, beside node_modules, so that Node finds the SDK.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "nodefetch", version: "1.0.0" });

server.tool("fetch", { url: z.string() }, async ({ url }) => {
  let status = 0;
  let body = "";
  try {
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${process.env.API_KEY ?? ""}` },
    });
    status = response.status;
    body = await response.text();
  } catch (error) {
    body = String(error?.cause ?? error);
  }
  return { content: [{ type: "text", text: JSON.stringify({ status, body }) }] };
});

await server.connect(new StdioServerTransport());
