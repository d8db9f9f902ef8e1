#!/usr/bin/env python3
"""Prints the chart's values table (Markdown) from values.schema.json and
the defaults in values.yaml: docs/install.md carries it between the
markers `<!-- values-table begin -->` and `<!-- values-table end -->`, and
manifests/check.sh fails when the two differ.

    python3 charts/values-table.py            # print the table
    python3 charts/values-table.py --write    # rewrite it in docs/install.md
"""
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "csum-offload")
DOC = os.path.join(HERE, "..", "docs", "install.md")
BEGIN, END = "<!-- values-table begin -->", "<!-- values-table end -->"


def kind(node):
    if "enum" in node:
        return ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    t = node.get("type", "any")
    if t == "integer" and "minimum" in node and "maximum" in node:
        return f"integer {node['minimum']}-{node['maximum']}"
    if t == "array" and node.get("items", {}).get("type"):
        return f"list of {node['items']['type']}s"
    return t


def default(values, path):
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return ""
        values = values[key]
    text = json.dumps(values, separators=(", ", ": "))
    return f"`{text}`"


def rows(node, values, path=()):
    props = node.get("properties")
    if props and not node.get("description"):
        for key, child in props.items():
            if key == "global":
                continue
            yield from rows(child, values, path + (key,))
        return
    yield (".".join(path), kind(node), default(values, path), node.get("description", ""))


def table():
    schema = json.load(open(os.path.join(CHART, "values.schema.json")))
    values = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
    out = ["| Value | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for key, typ, dflt, desc in rows(schema, values):
        if not desc:
            sys.exit(f"values.schema.json: {key} has no description")
        desc = desc.replace("|", "\\|")
        out.append(f"| `{key}` | {typ} | {dflt} | {desc} |")
    return "\n".join(out) + "\n"


def main():
    text = table()
    if sys.argv[1:] == ["--write"]:
        doc = open(DOC).read()
        head, rest = doc.split(BEGIN + "\n", 1)
        _, tail = rest.split(END, 1)
        open(DOC, "w").write(head + BEGIN + "\n" + text + END + tail)
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        sys.stdout.write(text)


main()
