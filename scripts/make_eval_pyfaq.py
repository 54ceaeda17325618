#!/usr/bin/env python3
"""Builds a BEIR-layout evaluation set from the Python FAQ (Debian package python3.11-doc).

Same construction as ../shared/eval/debian-faq, on a different corpus, so fusion defaults are
checked on more than one dataset: every FAQ entry whose heading is a question becomes a query;
its relevant passage is the entry's body with the question removed; the passage title is the
section the entry sits in. Deterministic: the same input files give byte-identical output.

usage: make_eval_pyfaq.py SOURCE_DIR OUT_DIR   (SOURCE_DIR = .../html/_sources/faq)
"""
import os
import re
import sys

import beir

UNDERLINE = re.compile(r"^([=\-~^*#\"'`+])\1{2,}\s*$")


def sections(lines):
    """Yields (level, title, body_lines) for each heading of an .rst file."""
    levels = []  # adornment characters in order of first use (rst defines levels this way)
    heads = []  # (line index of title, level, title)
    i = 0
    while i < len(lines) - 1:
        title, under = lines[i].rstrip(), lines[i + 1].rstrip()
        over = i > 0 and UNDERLINE.match(lines[i - 1].rstrip() or "")
        m = UNDERLINE.match(under)
        if title and not UNDERLINE.match(title) and m and len(under) >= len(title.strip()):
            key = ("over" if over else "") + m.group(1)
            if key not in levels:
                levels.append(key)
            heads.append((i, levels.index(key), title.strip()))
            i += 2
            continue
        i += 1
    for n, (start, level, title) in enumerate(heads):
        end = heads[n + 1][0] - 1 if n + 1 < len(heads) else len(lines)
        # Drop the next heading's overline, if any, from this body.
        body = lines[start + 2 : end]
        yield level, title, body


def clean(body):
    text = []
    for line in body:
        s = line.rstrip()
        if s.startswith(".. _") or s.startswith(".. only::") or s.startswith(".. contents::"):
            continue
        s = re.sub(r":[a-z:]+:`~?([^`<]*?)\s*(?:<[^>]*>)?`", r"\1", s)  # :func:`x` -> x
        s = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", s)  # `text <url>`_ -> text
        s = s.replace("``", "")
        text.append(s)
    out = "\n".join(text).strip()
    return re.sub(r"\n{3,}", "\n\n", out)


def main():
    src, out = sys.argv[1], sys.argv[2]
    corpus, queries, qrels = [], [], []
    for name in sorted(os.listdir(src)):
        if not name.endswith(".rst.txt") or name.startswith("index"):
            continue
        with open(os.path.join(src, name), encoding="utf-8") as f:
            lines = f.read().splitlines()
        parents = {}
        for level, title, body in sections(lines):
            parents[level] = title
            if not title.endswith("?"):
                continue
            text = clean(body)
            if len(text.split()) < 5:
                continue
            n = len(corpus) + 1
            parent = parents.get(level - 1, title) if level > 0 else title
            corpus.append({"_id": f"pyfaq-{n}", "title": parent, "text": text})
            queries.append({"_id": f"q-{n}", "text": title})
            qrels.append((f"q-{n}", f"pyfaq-{n}"))
    beir.write(out, "python-faq", corpus, queries, qrels)


if __name__ == "__main__":
    main()
