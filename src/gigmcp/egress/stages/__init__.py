"""The stages of an exchange: injection, scrubbing and audit, each called by the exchange
(``exchange.py``) at named points of a :class:`~gigmcp.egress.flow.Flow`.

The points, in the order they come (a stage implements those it needs):

- ``on_request``: the exchange begins (audit starts its clock and its row);
- ``on_request_headers``: the head to send upstream is built, nothing dialled yet
  (inject rewrites it or refuses, audit notes the credentials injected, scrub asks for an
  answer it can read);
- ``on_request_body_chunk``: a piece of the sandbox's body on its way up (inject watches
  for placeholders, audit counts);
- ``on_response_headers``: the upstream's head is in (audit notes the status, scrub
  picks a decoder or refuses an answer it cannot read, then scrubs the headers);
- ``on_response_body_chunk`` and ``on_response_end``: the answer streams back (audit
  counts, scrub decodes and scrubs);
- ``on_switch``: a WebSocket upgrade was accepted (scrub re-frames what comes back);
- ``on_denied``, ``on_cut_off``, ``on_aborted``, ``on_done``: how the exchange ended
  (audit).

Each stage keeps what it needs between points on the flow, so one stage object serves
every flow, and each can be driven over a flow built in memory.

The package holds the stages only; the exchange owns the order of the calls. A stage
must never write to a stream, dial, or touch another flow's state.
"""
