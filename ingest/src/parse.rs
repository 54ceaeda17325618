//! Text extraction with structure. Each parser returns the document's text plus sections
//! (byte ranges of that text) that carry a PDF page number or a heading path.
//!
//! Every input here is hostile until bounded: nesting is limited per format ([`ParseLimits`]),
//! walks use explicit stacks instead of recursion, headings are capped, and a PDF's compressed
//! streams and object graph are checked ([`crate::pdfcheck`]) before `pdf-extract` sees it.
//! What a limit cannot catch (a parser that loops or recurses inside a library) is the
//! sandbox's job ([`crate::sandbox`]): the server never calls [`parse`] in its own process.
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use ego_tree::NodeId;
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::tree_builder::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::{Attribute, QualName};
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use scraper::{ElementRef, Html, HtmlTreeSink, Node};
use serde::{Deserialize, Serialize};

use crate::detect::ContentType;
use crate::error::IngestError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What one document may cost a parser, and how PDF text is cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseLimits {
    /// Drop contents and index pages, running headers and page numbers, and join hyphenated
    /// words ([`crate::pdflayout`]). Off only to measure what the clean-up does.
    pub clean_pdf_layout: bool,
    /// Deepest element (HTML), block (Markdown) or Form XObject chain (PDF).
    pub max_depth: u32,
    /// One heading's text is cut to this many bytes: it is repeated in every chunk's context.
    pub max_heading_bytes: usize,
    /// The sum of a PDF's decompressed streams.
    pub max_decompressed_bytes: u64,
    /// The extracted text.
    pub max_text_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            clean_pdf_layout: true,
            max_depth: 256,
            max_heading_bytes: 256,
            max_decompressed_bytes: 256 << 20,
            max_text_bytes: 64 << 20,
        }
    }
}

/// Extract a document's text. Parser panics are caught here and become
/// [`IngestError::ParserPanic`], so one malformed file can only fail its own job.
pub fn parse(
    bytes: &[u8],
    content_type: ContentType,
    limits: &ParseLimits,
) -> Result<Extracted, IngestError> {
    let name = match content_type {
        ContentType::Pdf => "PDF",
        ContentType::Markdown => "Markdown",
        ContentType::Html => "HTML",
        ContentType::Text => "text",
    };
    let result = catch_unwind(AssertUnwindSafe(|| match content_type {
        ContentType::Pdf => parse_pdf(bytes, limits),
        ContentType::Markdown => parse_markdown(utf8(bytes)?, limits),
        ContentType::Html => parse_html(utf8(bytes)?, limits),
        ContentType::Text => Ok(single_section(utf8(bytes)?.to_string())),
    }));
    let extracted = result.map_err(|_| IngestError::ParserPanic(name))??;
    if extracted.text.len() > limits.max_text_bytes {
        return Err(IngestError::DecompressedTooLarge(
            limits.max_text_bytes as u64,
        ));
    }
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

/// One entry of a PDF's outline (its bookmarks): the heading and the physical page (1-based)
/// it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineEntry {
    pub level: usize,
    pub title: String,
    pub page: u32,
}

/// A PDF's outline in document order; empty when it has none. For evaluation on the
/// operator's own files: it does not run in the sandbox, so never call it on uploads.
pub fn pdf_outline(bytes: &[u8]) -> Result<Vec<OutlineEntry>, IngestError> {
    let doc =
        lopdf::Document::load_mem(bytes).map_err(|e| IngestError::PdfCorrupt(e.to_string()))?;
    let has_outline = doc.catalog().is_ok_and(|c| c.get(b"Outlines").is_ok());
    if !has_outline {
        return Ok(vec![]);
    }
    match doc.get_toc() {
        Ok(toc) => Ok(toc
            .toc
            .into_iter()
            .map(|t| OutlineEntry {
                level: t.level,
                title: t.title,
                page: t.page as u32,
            })
            .collect()),
        Err(lopdf::Error::NoOutline) => Ok(vec![]),
        Err(e) => Err(IngestError::PdfCorrupt(e.to_string())),
    }
}

fn parse_pdf(bytes: &[u8], limits: &ParseLimits) -> Result<Extracted, IngestError> {
    crate::pdfcheck::check(bytes, limits)?;
    let pages = pdf_extract::extract_text_from_mem_by_pages(bytes)
        .map_err(|e| IngestError::PdfCorrupt(e.to_string()))?;
    let pages = if limits.clean_pdf_layout {
        crate::pdflayout::clean_pages(&pages)
    } else {
        pages
    };
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
/// Nesting (block quotes, lists) is limited here, before the Markdown-aware chunker parses the
/// same text again.
fn parse_markdown(src: &str, limits: &ParseLimits) -> Result<Extracted, IngestError> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut sections = Vec::new();
    let mut section_start = 0;
    let mut current: Option<(usize, usize, String)> = None; // (level, start offset, text)
    let mut depth: u32 = 0;
    let mut cuts: Vec<(Range<usize>, String)> = Vec::new();
    for (event, range) in Parser::new(src).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level: l, .. }) => {
                current = Some((level(l), range.start, String::new()))
            }
            Event::Start(Tag::BlockQuote(_) | Tag::List(_) | Tag::Item) => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(IngestError::TooComplex(format!(
                        "Markdown nests deeper than {} blocks",
                        limits.max_depth
                    )));
                }
            }
            Event::End(TagEnd::BlockQuote(_) | TagEnd::List(_) | TagEnd::Item) => {
                depth = depth.saturating_sub(1)
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, title)) = current.as_mut() {
                    if title.len() < limits.max_heading_bytes {
                        title.push_str(&t);
                    }
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
                let title = truncate(title.trim().to_string(), limits.max_heading_bytes);
                // The chunker reads the Markdown source again, and splitting one enormous
                // heading line costs it super-linear time: the line itself is cut too.
                if range.end - start > limits.max_heading_bytes + 16 {
                    let cut = format!("{} {title}\n", "#".repeat(lvl));
                    cuts.push((start..range.end, cut));
                }
                stack.push((lvl, title));
            }
            _ => {}
        }
    }
    push_section(&mut sections, section_start..src.len(), &stack);
    if cuts.is_empty() {
        return Ok(Extracted {
            text: src.to_string(),
            sections,
        });
    }
    // Rebuild the text without the cut parts; every section boundary is a heading's start or
    // the end, never inside a cut, so it moves by what was removed before it.
    let mut text = String::with_capacity(src.len());
    let mut pos = 0;
    for (range, replacement) in &cuts {
        text.push_str(&src[pos..range.start]);
        text.push_str(replacement);
        pos = range.end;
    }
    text.push_str(&src[pos..]);
    let moved = |offset: usize| -> usize {
        let mut out = offset as isize;
        for (range, replacement) in &cuts {
            if range.end <= offset {
                out += replacement.len() as isize - range.len() as isize;
            }
        }
        out as usize
    };
    for s in &mut sections {
        s.range = moved(s.range.start)..moved(s.range.end);
    }
    Ok(Extracted { text, sections })
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
    max_heading_bytes: usize,
}

/// One step of the explicit-stack walk: hostile HTML nests as deep as it likes, and a walk that
/// recursed per level would overflow the thread's stack.
enum Step<'a> {
    Enter(ego_tree::NodeRef<'a, Node>, bool),
    Leave,
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

    fn walk(&mut self, root: ElementRef<'_>) {
        let mut steps = vec![Step::Enter(*root, false)];
        while let Some(step) = steps.pop() {
            let (node, pre) = match step {
                Step::Leave => {
                    self.block_break();
                    continue;
                }
                Step::Enter(node, pre) => (node, pre),
            };
            let el = match node.value() {
                Node::Text(t) => {
                    self.push_inline(t, pre);
                    continue;
                }
                Node::Element(_) => match ElementRef::wrap(node) {
                    Some(el) => el,
                    None => continue,
                },
                _ => continue,
            };
            let v = el.value();
            let name = v.name();
            if SKIP_TAGS.contains(&name)
                || v.attr("role") == Some("navigation")
                || v.attr("aria-hidden") == Some("true")
                || v.classes().any(|c| SKIP_CLASSES.contains(&c))
            {
                continue;
            }
            let heading = match name {
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    Some(name.as_bytes()[1] as usize - b'0' as usize)
                }
                _ => None,
            };
            if BLOCK_TAGS.contains(&name) {
                self.block_break();
                steps.push(Step::Leave);
            }
            if let Some(lvl) = heading {
                let title = truncate(heading_text(el), self.max_heading_bytes);
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
            for child in node.children().rev() {
                steps.push(Step::Enter(child, pre));
            }
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

/// Cut at a character boundary, at most `max` bytes.
fn truncate(mut s: String, max: usize) -> String {
    s.truncate(crate::floor_char_boundary(&s, max));
    s
}

/// A tree sink that measures how deep the tree gets while html5ever builds it. The tree
/// builder scans its stack of open elements on most tags, so a document nested 100,000 deep
/// costs quadratic time long before it costs memory: the parse stops feeding input as soon
/// as any node is deeper than the limit.
struct DepthGuard {
    inner: HtmlTreeSink,
    depth: RefCell<HashMap<NodeId, u32>>,
    max_depth: u32,
    exceeded: Rc<Cell<bool>>,
}

impl DepthGuard {
    fn place(&self, child: &NodeOrText<NodeId>, depth: u32) {
        if let NodeOrText::AppendNode(id) = child {
            self.depth.borrow_mut().insert(*id, depth);
            if depth > self.max_depth {
                self.exceeded.set(true);
            }
        }
    }

    fn depth_of(&self, id: &NodeId) -> u32 {
        self.depth.borrow().get(id).copied().unwrap_or(0)
    }
}

impl TreeSink for DepthGuard {
    type Output = Html;
    type Handle = NodeId;
    type ElemName<'a> = <HtmlTreeSink as TreeSink>::ElemName<'a>;

    fn finish(self) -> Html {
        self.inner.finish()
    }
    fn parse_error(&self, msg: Cow<'static, str>) {
        self.inner.parse_error(msg)
    }
    fn set_quirks_mode(&self, mode: QuirksMode) {
        self.inner.set_quirks_mode(mode)
    }
    fn get_document(&self) -> NodeId {
        self.inner.get_document()
    }
    fn same_node(&self, x: &NodeId, y: &NodeId) -> bool {
        self.inner.same_node(x, y)
    }
    fn elem_name<'a>(&'a self, target: &'a NodeId) -> Self::ElemName<'a> {
        self.inner.elem_name(target)
    }
    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> NodeId {
        self.inner.create_element(name, attrs, flags)
    }
    fn create_comment(&self, text: StrTendril) -> NodeId {
        self.inner.create_comment(text)
    }
    fn create_pi(&self, target: StrTendril, data: StrTendril) -> NodeId {
        self.inner.create_pi(target, data)
    }
    fn append(&self, parent: &NodeId, child: NodeOrText<NodeId>) {
        self.place(&child, self.depth_of(parent) + 1);
        self.inner.append(parent, child)
    }
    fn append_based_on_parent_node(
        &self,
        element: &NodeId,
        prev_element: &NodeId,
        child: NodeOrText<NodeId>,
    ) {
        self.place(
            &child,
            self.depth_of(element).max(self.depth_of(prev_element)) + 1,
        );
        self.inner
            .append_based_on_parent_node(element, prev_element, child)
    }
    fn append_doctype_to_document(
        &self,
        name: StrTendril,
        public_id: StrTendril,
        system_id: StrTendril,
    ) {
        self.inner
            .append_doctype_to_document(name, public_id, system_id)
    }
    fn append_before_sibling(&self, sibling: &NodeId, new_node: NodeOrText<NodeId>) {
        self.place(&new_node, self.depth_of(sibling));
        self.inner.append_before_sibling(sibling, new_node)
    }
    fn remove_from_parent(&self, target: &NodeId) {
        self.inner.remove_from_parent(target)
    }
    fn reparent_children(&self, node: &NodeId, new_parent: &NodeId) {
        self.inner.reparent_children(node, new_parent)
    }
    fn add_attrs_if_missing(&self, target: &NodeId, attrs: Vec<Attribute>) {
        self.inner.add_attrs_if_missing(target, attrs)
    }
    fn get_template_contents(&self, target: &NodeId) -> NodeId {
        self.inner.get_template_contents(target)
    }
}

fn parse_html(src: &str, limits: &ParseLimits) -> Result<Extracted, IngestError> {
    let exceeded = Rc::new(Cell::new(false));
    let sink = DepthGuard {
        inner: HtmlTreeSink::new(Html::new_document()),
        depth: RefCell::new(HashMap::new()),
        max_depth: limits.max_depth,
        exceeded: exceeded.clone(),
    };
    let mut parser = html5ever::driver::parse_document(sink, Default::default());
    let mut rest = src;
    while !rest.is_empty() {
        let mut cut = rest.len().min(16 * 1024);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        parser.process(StrTendril::from_slice(piece));
        if exceeded.get() {
            return Err(IngestError::TooComplex(format!(
                "HTML nests deeper than {} elements",
                limits.max_depth
            )));
        }
        rest = tail;
    }
    let doc = parser.finish();
    if exceeded.get() {
        return Err(IngestError::TooComplex(format!(
            "HTML nests deeper than {} elements",
            limits.max_depth
        )));
    }
    let mut out = HtmlText {
        text: String::new(),
        sections: vec![],
        section_start: 0,
        stack: vec![],
        max_heading_bytes: limits.max_heading_bytes,
    };
    out.walk(doc.root_element());
    let end = out.text.trim_end().len();
    out.text.truncate(end);
    let tail = out.section_start..out.text.len();
    push_section(&mut out.sections, tail, &out.stack);
    Ok(Extracted {
        text: out.text,
        sections: out.sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_heading_paths() {
        let md = "intro\n\n# A\n\ntext a\n\n## B\n\ntext b\n\n# C\n\ntext c\n";
        let e = parse(
            md.as_bytes(),
            ContentType::Markdown,
            &ParseLimits::default(),
        )
        .unwrap();
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
        let e = parse(html.as_bytes(), ContentType::Html, &ParseLimits::default()).unwrap();
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
            parse(b"\xff\xfe\xfd", ContentType::Text, &ParseLimits::default()),
            Err(IngestError::InvalidUtf8(0))
        ));
        assert!(matches!(
            parse(b"  \n ", ContentType::Text, &ParseLimits::default()),
            Err(IngestError::Empty)
        ));
        assert!(matches!(
            parse(
                b"%PDF-1.4 garbage",
                ContentType::Pdf,
                &ParseLimits::default()
            ),
            Err(IngestError::PdfCorrupt(_))
        ));
    }

    fn code(bytes: &[u8], ct: ContentType, limits: &ParseLimits) -> &'static str {
        match parse(bytes, ct, limits) {
            Ok(_) => "ok",
            Err(e) => e.code().as_str(),
        }
    }

    #[test]
    fn pdf_structure_classes_fail_with_codes() {
        use crate::hostile::*;
        let l = ParseLimits::default();
        assert_eq!(
            code(&pdf_self_drawing_form(), ContentType::Pdf, &l),
            "document_too_complex"
        );
        assert_eq!(
            code(&pdf_form_cycle(), ContentType::Pdf, &l),
            "document_too_complex"
        );
        assert_eq!(
            code(&pdf_parent_cycle(), ContentType::Pdf, &l),
            "document_too_complex"
        );
        assert_eq!(
            code(&pdf_deep_forms(l.max_depth + 1), ContentType::Pdf, &l),
            "document_too_complex"
        );
        // A legitimate chain of forms still parses.
        let ok = parse(&pdf_deep_forms(4), ContentType::Pdf, &l).unwrap();
        assert!(ok.text.contains("Hello"), "{:?}", ok.text);
    }

    #[test]
    fn pdf_decompression_is_budgeted() {
        let small = ParseLimits {
            max_decompressed_bytes: 1 << 20,
            ..ParseLimits::default()
        };
        let bomb = crate::hostile::pdf_flate_bomb(8 << 20);
        assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
        assert_eq!(
            code(&bomb, ContentType::Pdf, &small),
            "decompressed_too_large"
        );
    }

    #[test]
    fn deep_html_and_markdown_are_refused_and_shallow_ones_parse() {
        use crate::hostile::*;
        let l = ParseLimits::default();
        for tag in ["div", "span", "blockquote", "ul", "section", "b"] {
            assert_eq!(
                code(&html_nested(tag, 100_000), ContentType::Html, &l),
                "document_too_complex",
                "{tag}"
            );
        }
        let ok = parse(&html_nested("div", 100), ContentType::Html, &l).unwrap();
        assert_eq!(ok.text, "deep text");
        assert_eq!(
            code(&markdown_nested(10_000), ContentType::Markdown, &l),
            "document_too_complex"
        );
        assert_eq!(code(&markdown_nested(20), ContentType::Markdown, &l), "ok");
    }

    #[test]
    fn headings_are_capped() {
        let l = ParseLimits::default();
        let md = crate::hostile::markdown_huge_heading(200_000, 40_000);
        let e = parse(&md, ContentType::Markdown, &l).unwrap();
        for s in &e.sections {
            assert!(s
                .heading_path
                .iter()
                .all(|h| h.len() <= l.max_heading_bytes));
        }
        // The text the chunker reads has the cut heading too, and the sections still cover it.
        assert!(e.text.len() < 50_000, "{}", e.text.len());
        assert!(e.text.starts_with("# hhhhhhh"));
        assert_eq!(e.sections.last().unwrap().range.end, e.text.len());
        assert_eq!(e.sections[0].range.start, 0);
        let md = "# Short\n\nbody\n\n## ".to_string() + &"x".repeat(1000) + "\n\ntail\n";
        let e = parse(md.as_bytes(), ContentType::Markdown, &l).unwrap();
        let last = e.sections.last().unwrap();
        assert_eq!(
            &e.text[last.range.clone()],
            format!("## {}\n\ntail\n", "x".repeat(256))
        );
        let heading = "x".repeat(10_000);
        let html = format!("<h1>{heading}</h1><p>body</p>");
        let e = parse(html.as_bytes(), ContentType::Html, &l).unwrap();
        assert_eq!(e.sections[0].heading_path[0].len(), l.max_heading_bytes);
    }

    #[test]
    fn extracted_text_is_bounded() {
        let l = ParseLimits {
            max_text_bytes: 1000,
            ..ParseLimits::default()
        };
        let text = "word ".repeat(1000);
        assert_eq!(
            code(text.as_bytes(), ContentType::Text, &l),
            "decompressed_too_large"
        );
    }
}
