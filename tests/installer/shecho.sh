#!/bin/sh
# A small MCP server in POSIX sh, for the OCI install tests: its image holds only dash,
# the C library and this file. Newline-delimited JSON-RPC on stdio; one tool, "hello",
# that answers with the id written into the image at build time (/image-id), so a test
# knows which image answered. Not a general JSON parser: it reads what the gateway sends.
read -r image_id < /image-id
while IFS= read -r line; do
  case "$line" in
    *'"id":'*) id=${line#*\"id\":}; id=${id%%[,\}]*} ;;
    *) continue ;;
  esac
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"shecho","version":"1.0.0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"hello","description":"Say which image answers","inputSchema":{"type":"object","properties":{}}},{"name":"wipe","description":"A destructive tool, off by default","inputSchema":{"type":"object","properties":{}}}]}}\n' "$id" ;;
    *'"method":"tools/call"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"hello from %s"}]}}\n' "$id" "$image_id" ;;
    *'"method":"ping"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *)
      printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"Method not found"}}\n' "$id" ;;
  esac
done
