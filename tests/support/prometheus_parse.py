"""Reads Prometheus text on stdin with prometheus_client's parser and prints
every sample on one line, tab-separated: family, type, sample name, labels
(`key=value` joined by `;`, sorted by key), value. Used by tests/metrics.rs."""

import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ";".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
        print("\t".join([family.name, family.type, sample.name, labels, repr(sample.value)]))
