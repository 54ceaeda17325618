//! Hostile documents, generated: the hostile-input suite, the parser tests and the fuzzing run
//! build them here instead of committing them. Each one stands for a class: a new file of the
//! same class must fail the same way.
use std::io::Write;

/// A PDF from object bodies (1-based, in order), with a correct cross-reference table.
pub fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend(body);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn stream(dict: &str, content: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", content.len()).into_bytes();
    out.extend(content);
    out.extend(b"\nendstream");
    out
}

/// Catalog, Pages, one Page with a font, its content, and `/Fm0` in its resources; `extra`
/// objects follow from number 6 on.
fn page_with_xobject(content: &[u8], extra: Vec<Vec<u8>>) -> Vec<u8> {
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
           /Resources << /Font << /F1 5 0 R >> /XObject << /Fm0 6 0 R >> >> >>"
            .to_vec(),
        stream("", content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    objects.extend(extra);
    pdf(&objects)
}

/// The reported reproduction: a Form XObject that draws itself (807 bytes in the report).
pub fn pdf_self_drawing_form() -> Vec<u8> {
    page_with_xobject(
        b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET /Fm0 Do",
        vec![stream(
            "/Type /XObject /Subtype /Form /BBox [0 0 612 792] \
             /Resources << /XObject << /Fm0 6 0 R >> >>",
            b"/Fm0 Do",
        )],
    )
}

/// The same class, longer: forms A -> B -> C -> A.
pub fn pdf_form_cycle() -> Vec<u8> {
    let form = |next: u32| {
        stream(
            &format!(
                "/Type /XObject /Subtype /Form /BBox [0 0 612 792] \
                 /Resources << /XObject << /Fm0 {next} 0 R >> >>"
            ),
            b"/Fm0 Do",
        )
    };
    page_with_xobject(
        b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET /Fm0 Do",
        vec![form(7), form(8), form(6)],
    )
}

/// No cycle, but a chain of `depth` forms each drawing the next.
pub fn pdf_deep_forms(depth: u32) -> Vec<u8> {
    let forms = (0..depth)
        .map(|i| {
            let resources = if i + 1 < depth {
                format!("/Resources << /XObject << /Fm0 {} 0 R >> >>", 7 + i)
            } else {
                String::new()
            };
            stream(
                &format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] {resources}"),
                if i + 1 < depth { b"/Fm0 Do" } else { b"" },
            )
        })
        .collect();
    page_with_xobject(b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET /Fm0 Do", forms)
}

/// A form with no `/Resources` of its own draws with its drawer's: here the page's, which
/// name the form itself.
pub fn pdf_inherited_form_cycle() -> Vec<u8> {
    page_with_xobject(
        b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET /Fm0 Do",
        vec![stream(
            "/Type /XObject /Subtype /Form /BBox [0 0 612 792]",
            b"/Fm0 Do",
        )],
    )
}

/// No cycle and shallow, but each form draws the next one twice: 2^depth draws.
pub fn pdf_form_fan_out(depth: u32) -> Vec<u8> {
    let forms = (0..depth)
        .map(|i| {
            let next = 7 + i;
            if i + 1 < depth {
                stream(
                    &format!(
                        "/Type /XObject /Subtype /Form /BBox [0 0 612 792] \
                         /Resources << /XObject << /A {next} 0 R /B {next} 0 R >> >>"
                    ),
                    b"/A Do /B Do",
                )
            } else {
                stream("/Type /XObject /Subtype /Form /BBox [0 0 612 792]", b"")
            }
        })
        .collect();
    page_with_xobject(b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET /Fm0 Do", forms)
}

/// A page tree whose `/Pages` node has `/Parent 6 0 R`; object 6 is `sixth`.
fn page_tree_with_parent(sixth: &[u8]) -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 /Parent 6 0 R >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream("", b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        sixth.to_vec(),
    ])
}

/// A `/Parent` loop through an object that is only a reference to another object.
pub fn pdf_parent_cycle_through_reference() -> Vec<u8> {
    page_tree_with_parent(b"3 0 R")
}

/// A page whose `/Parent` chain loops (page -> pages -> page tree node -> pages).
pub fn pdf_parent_cycle() -> Vec<u8> {
    page_tree_with_parent(b"<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>")
}

/// A page content stream that inflates to `inflated` bytes of spaces (the report: 1 MB to 1 GiB).
pub fn pdf_flate_bomb(inflated: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(block.len());
        z.write_all(&block[..n]).expect("in memory");
        left -= n;
    }
    let compressed = z.finish().expect("in memory");
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
           /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_vec(),
        stream("/Filter /FlateDecode", &compressed),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ])
}

/// Arrays nested `depth` deep inside a page dictionary: a recursive object parser's stack.
pub fn pdf_deep_arrays(depth: usize) -> Vec<u8> {
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Junk {nested} >>"
        )
        .into_bytes(),
        stream("", b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET"),
    ])
}

/// `depth` nested elements around one sentence (the report: 100,000 `<div>`s).
pub fn html_nested(tag: &str, depth: usize) -> Vec<u8> {
    let mut out = b"<!doctype html><html><body>".to_vec();
    for _ in 0..depth {
        out.extend(format!("<{tag}>").as_bytes());
    }
    out.extend(b"deep text");
    for _ in 0..depth {
        out.extend(format!("</{tag}>").as_bytes());
    }
    out.extend(b"</body></html>");
    out
}

/// `depth` nested block quotes, then `depth` nested lists, each on one line (indenting
/// would make the file quadratic in the depth).
pub fn markdown_nested(depth: usize) -> Vec<u8> {
    let mut out = String::from("# Deep\n\nintro\n\n");
    out.push_str(&"> ".repeat(depth));
    out.push_str("quoted\n\n");
    out.push_str(&"- ".repeat(depth));
    out.push_str("item\n");
    out.into_bytes()
}

/// A heading of `bytes` bytes over a body of `body` bytes (the report: 200 KB heading, 567
/// chunks each carrying it).
pub fn markdown_huge_heading(bytes: usize, body: usize) -> Vec<u8> {
    let heading: String = (0..bytes)
        .map(|i| if i % 8 == 7 { ' ' } else { 'h' })
        .collect();
    let mut out = format!("# {heading}\n\n");
    while out.len() < bytes + body {
        out.push_str("Plain sentences about nothing in particular fill this body. ");
    }
    out.into_bytes()
}

/// One "word" of `bytes` letters: no whitespace or punctuation to split on.
pub fn huge_token(bytes: usize) -> Vec<u8> {
    let mut out = b"start ".to_vec();
    out.extend((0..bytes).map(|i| b'a' + (i % 26) as u8));
    out.extend(b" end");
    out
}
