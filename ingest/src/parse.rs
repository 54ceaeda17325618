//! Text extraction with structure. Each parser returns the document's text plus sections
//! (byte ranges of that text) that carry a PDF page number or a heading path.
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use scraper::{ElementRef, Html, Node};

use crate::detect::ContentType;
use crate::error::IngestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Byte range of [`Extracted::text`].
    pub range: Range<usize>,
    /// 1-based physical page index (as PDF viewers number pages), PDFs only.
    pub page: Option<u32>,
    /// Headings enclosing this section, outermost first (Markdown and HTML).
    pub heading_path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub text: String,
    /// Contiguous, ordered, non-overlapping; together they cover the text.
    pub sections: Vec<Section>,
}

/// Extract a document's text. Parser panics are caught here and become
/// [`IngestError::ParserPanic`], so one malformed file can only fail its own job.
pub fn parse(bytes: &[u8], content_type: ContentType) -> Result<Extracted, IngestError> {
    let name = match content_type {
        ContentType::Pdf => "PDF",
        ContentType::Markdown => "Markdown",
        ContentType::Html => "HTML",
        ContentType::Text => "text",
    };
    let result = catch_unwind(AssertUnwindSafe(|| match content_type {
        ContentType::Pdf => parse_pdf(bytes),
        ContentType::Markdown => parse_markdown(utf8(bytes)?),
        ContentType::Html => Ok(parse_html(utf8(bytes)?)),
        ContentType::Text => Ok(single_section(utf8(bytes)?.to_string())),
    }));
    let extracted = result.map_err(|_| IngestError::ParserPanic(name))??;
    if extracted.text.trim().is_empty() {
        return Err(match content_type {
            ContentType::Pdf => IngestError::PdfNoText,
            _ => IngestError::Empty,
        });
    }
    Ok(extracted)
}

fn utf8(bytes: &[u8]) -> Result<&str, IngestError> {
    let s = std::str::from_utf8(bytes).map_err(|e| IngestError::InvalidUtf8(e.valid_up_to()))?;
    Ok(s.strip_prefix('\u{feff}').unwrap_or(s))
}

fn single_section(text: String) -> Extracted {
    let sections = vec![Section {
        range: 0..text.len(),
        page: None,
        heading_path: vec![],
    }];
    Extracted { text, sections }
}

fn parse_pdf(bytes: &[u8]) -> Result<Extracted, IngestError> {
    let pages = pdf_extract::extract_text_from_mem_by_pages(bytes)
        .map_err(|e| IngestError::PdfCorrupt(e.to_string()))?;
    let mut text = String::new();
    let mut sections = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let page = page.trim();
        if page.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(page);
        sections.push(Section {
            range: start..text.len(),
            page: Some(i as u32 + 1),
            heading_path: vec![],
        });
    }
    Ok(Extracted { text, sections })
}

fn level(l: HeadingLevel) -> usize {
    l as usize
}

/// Markdown keeps its source text (the chunker is Markdown-aware); sections start at headings.
fn parse_markdown(src: &str) -> Result<Extracted, IngestError> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut sections = Vec::new();
    let mut section_start = 0;
    let mut current: Option<(usize, usize, String)> = None; // (level, start offset, text)
    for (event, range) in Parser::new(src).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level: l, .. }) => {
                current = Some((level(l), range.start, String::new()))
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, title)) = current.as_mut() {
                    title.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((lvl, start, title)) = current.take() else {
                    continue;
                };
                push_section(&mut sections, section_start..start, &stack);
                section_start = start;
                while stack.last().is_some_and(|(l, _)| *l >= lvl) {
                    stack.pop();
                }
                stack.push((lvl, title.trim().to_string()));
            }
            _ => {}
        }
    }
    push_section(&mut sections, section_start..src.len(), &stack);
    Ok(Extracted {
        text: src.to_string(),
        sections,
    })
}

fn push_section(sections: &mut Vec<Section>, range: Range<usize>, stack: &[(usize, String)]) {
    if range.is_empty() {
        return;
    }
    sections.push(Section {
        range,
        page: None,
        heading_path: stack.iter().map(|(_, t)| t.clone()).collect(),
    });
}

const SKIP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "svg", "head",
    "form", "button", "iframe", "canvas",
];
/// Class names of boilerplate blocks in common generators (Sphinx, Docusaurus, MkDocs...).
const SKIP_CLASSES: &[&str] = &[
    "sphinxsidebar",
    "related",
    "footer",
    "navbar",
    "breadcrumbs",
    "sidebar",
    "headerlink",
    "skip-link",
    "md-sidebar",
    "md-header",
    "md-footer",
];
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "td",
    "th",
    "pre",
    "blockquote",
    "br",
    "hr",
    "figure",
    "figcaption",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "body",
];

struct HtmlText {
    text: String,
    sections: Vec<Section>,
    section_start: usize,
    stack: Vec<(usize, String)>,
}

impl HtmlText {
    fn block_break(&mut self) {
        let trimmed = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(trimmed);
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    fn push_inline(&mut self, s: &str, pre: bool) {
        if pre {
            self.text.push_str(s);
            return;
        }
        for word in s.split_whitespace() {
            let glue = !self.text.is_empty() && !self.text.ends_with(['\n', ' ']);
            if glue
                || (s.starts_with(char::is_whitespace)
                    && self.text.ends_with(|c: char| !c.is_whitespace()))
            {
                self.text.push(' ');
            }
            self.text.push_str(word);
        }
        if s.ends_with(char::is_whitespace)
            && !self.text.is_empty()
            && !self.text.ends_with(['\n', ' '])
        {
            self.text.push(' ');
        }
    }

    fn walk(&mut self, el: ElementRef<'_>, pre: bool) {
        let v = el.value();
        let name = v.name();
        if SKIP_TAGS.contains(&name)
            || v.attr("role") == Some("navigation")
            || v.attr("aria-hidden") == Some("true")
            || v.classes().any(|c| SKIP_CLASSES.contains(&c))
        {
            return;
        }
        let heading = match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                Some(name.as_bytes()[1] as usize - b'0' as usize)
            }
            _ => None,
        };
        let block = BLOCK_TAGS.contains(&name);
        if block {
            self.block_break();
        }
        if let Some(lvl) = heading {
            let title = heading_text(el);
            if !title.is_empty() {
                let start = self.text.len();
                push_section(&mut self.sections, self.section_start..start, &self.stack);
                self.section_start = start;
                while self.stack.last().is_some_and(|(l, _)| *l >= lvl) {
                    self.stack.pop();
                }
                self.stack.push((lvl, title));
            }
        }
        let pre = pre || name == "pre";
        for child in el.children() {
            match child.value() {
                Node::Text(t) => self.push_inline(t, pre),
                Node::Element(_) => {
                    if let Some(c) = ElementRef::wrap(child) {
                        self.walk(c, pre);
                    }
                }
                _ => {}
            }
        }
        if block {
            self.block_break();
        }
    }
}

fn heading_text(el: ElementRef<'_>) -> String {
    let raw: String = el.text().collect();
    raw.replace('¶', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_html(src: &str) -> Extracted {
    let doc = Html::parse_document(src);
    let mut out = HtmlText {
        text: String::new(),
        sections: vec![],
        section_start: 0,
        stack: vec![],
    };
    out.walk(doc.root_element(), false);
    let end = out.text.trim_end().len();
    out.text.truncate(end);
    let tail = out.section_start..out.text.len();
    push_section(&mut out.sections, tail, &out.stack);
    Extracted {
        text: out.text,
        sections: out.sections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_heading_paths() {
        let md = "intro\n\n# A\n\ntext a\n\n## B\n\ntext b\n\n# C\n\ntext c\n";
        let e = parse(md.as_bytes(), ContentType::Markdown).unwrap();
        let paths: Vec<_> = e
            .sections
            .iter()
            .map(|s| s.heading_path.join(" > "))
            .collect();
        assert_eq!(paths, vec!["", "A", "A > B", "C"]);
        assert_eq!(&e.text[e.sections[2].range.clone()], "## B\n\ntext b\n\n");
    }

    #[test]
    fn html_drops_boilerplate_and_keeps_headings() {
        let html = r#"<html><head><title>t</title><style>p{}</style></head><body>
            <nav>Home | About</nav><div role="navigation">sidebar</div>
            <h1>Guide<a class="headerlink">¶</a></h1><p>Hello <b>bold</b> world.</p>
            <script>alert(1)</script><h2>Install</h2><p>Run it.</p></body></html>"#;
        let e = parse(html.as_bytes(), ContentType::Html).unwrap();
        assert_eq!(e.text, "Guide\nHello bold world.\nInstall\nRun it.");
        let paths: Vec<_> = e
            .sections
            .iter()
            .map(|s| s.heading_path.join(" > "))
            .collect();
        assert_eq!(paths, vec!["Guide", "Guide > Install"]);
    }

    #[test]
    fn bad_inputs_have_codes() {
        assert!(matches!(
            parse(b"\xff\xfe\xfd", ContentType::Text),
            Err(IngestError::InvalidUtf8(0))
        ));
        assert!(matches!(
            parse(b"  \n ", ContentType::Text),
            Err(IngestError::Empty)
        ));
        assert!(matches!(
            parse(b"%PDF-1.4 garbage", ContentType::Pdf),
            Err(IngestError::PdfCorrupt(_))
        ));
    }
}
