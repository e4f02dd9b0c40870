"""The gateway's own observability: Prometheus metrics, OpenTelemetry traces, JSON logs.

Low in the layer order so that every hot path may report to it: ``metrics.py`` (the
metric families, bounded labels, the scrape listener), ``tracing.py`` (the tracer, the
W3C trace context in ``_meta``, which call an instance's egress belongs to),
``probes.py`` (what the endpoint, router, supervisor, proxy and broker call: one small
function per event, a no-op while both metrics and tracing are off) and ``logjson.py``
(one JSON object per log line, with the trace id).

It must never take a label value from a client (user ids, tokens, arguments, host
names a client sent), never record a secret in a span or a log line, and never cost a
hot path more than a global check when it is switched off.
"""
