#!/usr/bin/env python3
"""Parses OpenMetrics text on stdin with the Prometheus project's own parser
(prometheus_client.openmetrics.parser) and prints one JSON object: "name{k=v,...}" -> value.
Exits non-zero when the text is not valid OpenMetrics."""
import json
import sys

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    sys.exit("parse.py: the Python package prometheus-client is not installed (pip install prometheus-client)")

out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
json.dump(out, sys.stdout, sort_keys=True)
