#!/usr/bin/env python3
"""Builds a BEIR-layout evaluation set from the R FAQ (Debian package r-doc-html).

A third set built like ../shared/eval/debian-faq, held out from choosing retrieval defaults:
every section or subsection becomes a passage (its body, heading removed; title = its chapter),
and every heading that is a question becomes a query whose relevant passage is that body.
A question whose own body is only an introduction to subsections takes the subsections' text,
and those subsections are not passages of their own. Deterministic.

usage: make_eval_rfaq.py R-FAQ.html OUT_DIR
"""
import re
import sys
from html.parser import HTMLParser

import beir

LEVELS = {"h2": 2, "h3": 3, "h4": 4}
BLOCK = {"p", "pre", "li", "dt", "dd", "br", "div", "table", "tr", "blockquote"}


class Flatten(HTMLParser):
    """Headings (level, text) and the text between them, in document order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.items = []  # ("h", level, text) or ("t", text)
        self.heading = None
        self.buf = []
        self.skip = 0
        self.divs = []  # per open <div>: is it navigation?

    def flush(self):
        text = "".join(self.buf)
        self.buf = []
        if self.heading is None and text.strip():
            self.items.append(("t", text))
        return text

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            nav = ("class", "header") in attrs
            self.divs.append(nav)
            self.skip += nav
        if tag in ("script", "style"):
            self.skip += 1
        if tag in LEVELS:
            self.flush()
            self.heading = LEVELS[tag]
        elif tag in BLOCK:
            self.buf.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        if tag == "div" and self.divs:
            self.skip -= self.divs.pop()
        if tag in LEVELS and self.heading is not None:
            text = " ".join("".join(self.buf).split())
            self.buf = []
            self.items.append(("h", self.heading, text))
            self.heading = None
        elif tag in BLOCK:
            self.buf.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)


def tidy(text):
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", out)


NUMBER = re.compile(r"^\d+(\.\d+)*\s+")


def main():
    src, out = sys.argv[1], sys.argv[2]
    parser = Flatten()
    with open(src, encoding="utf-8") as f:
        parser.feed(f.read())
    parser.flush()
    # Sections: (level, title, own text), from the first numbered chapter on.
    sections = []
    for item in parser.items:
        if item[0] == "h":
            sections.append([item[1], item[2], ""])
        elif sections:
            sections[-1][2] += item[1]
    sections = [s for s in sections if NUMBER.match(s[1])]
    corpus, queries, qrels = [], [], []
    chapter = ""
    i = 0
    while i < len(sections):
        level, heading, text = sections[i]
        title = NUMBER.sub("", heading)
        if level == 2:
            chapter = title
            i += 1
            continue
        body = tidy(text)
        j = i + 1
        if len(body.split()) < 5:
            # An introduction to subsections: the passage is the subsections' text.
            while j < len(sections) and sections[j][0] > level:
                body = tidy(body + "\n\n" + sections[j][2])
                j += 1
        i = j
        if len(body.split()) < 5:
            continue
        n = len(corpus) + 1
        corpus.append({"_id": f"rfaq-{n}", "title": chapter, "text": body})
        if title.endswith("?"):
            queries.append({"_id": f"q-{n}", "text": title})
            qrels.append((f"q-{n}", f"rfaq-{n}"))
    beir.write(out, "r-faq", corpus, queries, qrels)


if __name__ == "__main__":
    main()
