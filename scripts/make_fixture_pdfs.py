#!/usr/bin/env python3
"""Writes the small PDFs in fixtures/docs (committed; rerun only to change them):
- three-pages.pdf: three pages of text, the second page intentionally blank (physical page
  numbering must count it);
- no-text.pdf: one page with only vector graphics, like a scan without OCR;
- ../pdf/layout.pdf: a manual with a contents page, a running header, page numbers, a word
  hyphenated at a line end and an index page (the PDF clean-up's golden fixture)."""
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "docs"

def pdf(pages):
    """pages: list of content-stream bytes. Returns a minimal valid PDF with Helvetica."""
    objs = []
    def add(b):
        objs.append(b)
        return len(objs)
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    pages_id = len(objs) + 1 + 2 * len(pages)  # reserved below
    kids = []
    for content in pages:
        c = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        p = add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_id, font, c))
        kids.append(p)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, catalog, xref)
    return bytes(out)

def text_page(lines):
    ops = [b"BT /F1 12 Tf 72 720 Td 16 TL"]
    for line in lines:
        ops.append(b"(" + line.encode("latin-1").replace(b"(", b"\\(").replace(b")", b"\\)") + b") Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)

three = pdf([
    text_page(["Volcanoes of Iceland", "Hekla erupted in 2000 and is one of the most active volcanoes.",
               "Eyjafjallajokull stopped European air traffic in 2010."]),
    b"0.9 g 100 100 50 50 re f",  # page 2: no text at all
    text_page(["Glaciers", "Vatnajokull is the largest glacier in Iceland by volume.",
               "Glacier outburst floods are called jokulhlaups."]),
])
(OUT / "three-pages.pdf").write_bytes(three)
(OUT / "no-text.pdf").write_bytes(pdf([b"0 0 1 rg 72 72 468 648 re f"]))
HEADER = "LIGHTHOUSE KEEPING MANUAL"
layout = pdf([
    text_page(["Lighthouse Keeping Manual", "A guide for the keepers of coastal lights."]),
    text_page(["Contents", "1 Lamps . . . . . . . . . . . . . . . 3", "2 Fog signals . . . . . . . . . . . 4",
               "3 Logbooks . . . . . . . . . . . . . 5", "Index . . . . . . . . . . . . . . . . 6"]),
    text_page([HEADER, "1 Lamps", "The lamp burns paraffin and is trimmed every four hours; an equiv-",
               "alent electric lamp needs no trimming.", "3"]),
    text_page([HEADER, "2 Fog signals", "The fog horn sounds twice a minute when visibility falls below two",
               "nautical miles.", "4"]),
    text_page([HEADER, "3 Logbooks", "Every watch writes the weather, the lamp hours and the passing ships",
               "in the logbook.", "5"]),
    text_page(["Index", "fog horn, 4", "lamp, 3, 4", "logbook, 5", "paraffin, 3", "trimming, 3"]),
])
(OUT.parent / "pdf").mkdir(exist_ok=True)
(OUT.parent / "pdf" / "layout.pdf").write_bytes(layout)
print("wrote", OUT / "three-pages.pdf", OUT / "no-text.pdf", OUT.parent / "pdf" / "layout.pdf")
