//! Layout residue of PDF text, removed before chunking: running headers and footers (a line
//! repeated at the top or bottom of several pages, page numbers), table-of-contents and index
//! pages (lines of dot leaders or of page-number lists), and words hyphenated at a line end.
//! Pages keep their physical numbers: a dropped page becomes empty, never renumbers the rest.

/// A line repeated at a page edge on at least this many pages is a running header or footer.
const REPEATS: usize = 3;
/// Lines examined at each edge of a page.
const EDGE: usize = 2;

/// The line as a header compares: whitespace collapsed, digit runs as one `#` (page and
/// chapter numbers change from page to page). Case counts: a title page's `Lighthouse Keeping
/// Manual` is not the running head `LIGHTHOUSE KEEPING MANUAL`.
fn shape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut prev_digit = false;
    for w in line.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            prev_digit = false;
        }
        for c in w.chars() {
            if c.is_ascii_digit() {
                if !prev_digit {
                    out.push('#');
                }
                prev_digit = true;
            } else {
                out.push(c);
                prev_digit = false;
            }
        }
    }
    out
}

fn is_roman(s: &str) -> bool {
    !s.is_empty() && s.len() <= 6 && s.chars().all(|c| "ivxlcIVXLC".contains(c))
}

/// A page number alone on its line (`12`, `- 12 -`, `xiv`, `Page 3`, `3 of 40`).
fn is_page_number(line: &str) -> bool {
    let t = line
        .trim()
        .trim_matches(|c: char| c == '-' || c == '–' || c.is_whitespace());
    let t = t
        .strip_prefix("Page ")
        .or_else(|| t.strip_prefix("page "))
        .unwrap_or(t);
    let t = t.split(" of ").next().unwrap_or(t).trim();
    (!t.is_empty() && t.len() <= 4 && t.chars().all(|c| c.is_ascii_digit())) || is_roman(t)
}

/// `CHAPTER 12. GETTING SUPPORT FOR DEBIAN 64`: a chapter (section, appendix, part) label
/// with the page number, which changes with the chapter, so it may repeat only once or twice.
/// Also the all-capitals form with the section instead (`CHAPTER 12. GETTING SUPPORT …
/// 12.5. HOW DO I REPORT A BUG?`). A bare `Chapter 13` is the chapter's own heading: kept.
fn is_chapter_header(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = words.first().map(|w| w.to_lowercase()).unwrap_or_default();
    let capitals = line.chars().any(char::is_alphabetic) && !line.chars().any(char::is_lowercase);
    matches!(first.as_str(), "chapter" | "section" | "appendix" | "part")
        && words.len() >= 3
        && (ends_with_page(line) || capitals)
}

/// Ends with a page reference: digits, or a short roman numeral.
fn ends_with_page(line: &str) -> bool {
    let last = line.split_whitespace().last().unwrap_or("");
    (last.len() <= 4 && !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()))
        || is_roman(last)
}

/// `1.2 Title . . . . . 7` or `Title ........ 7`.
fn is_contents_line(line: &str) -> bool {
    let t = line.trim();
    ends_with_page(t) && (t.contains("....") || t.contains(". . .") || t.contains('…'))
}

/// `apt-get, 12, 45` or `dpkg 3, 17–19` (an index entry: a term, then page numbers).
fn is_index_line(line: &str) -> bool {
    let t = line.trim();
    let Some(first) = t.chars().next() else {
        return false;
    };
    if first.is_ascii_digit() || !ends_with_page(t) {
        return false;
    }
    let tail: String = t
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || matches!(c, ',' | ' ' | '-' | '–'))
        .collect();
    tail.contains(',') && tail.chars().any(|c| c.is_ascii_digit())
}

/// A contents or index page: most of its lines (at least five) are entries.
fn is_contents_page(lines: &[&str]) -> bool {
    let text: Vec<&&str> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    let entries = text
        .iter()
        .filter(|l| is_contents_line(l) || is_index_line(l))
        .count();
    text.len() >= 5 && entries * 2 >= text.len()
}

/// Join words hyphenated at a line end (`equiv-` / `alent`): a lowercase letter, a hyphen, the
/// end of the line, and a lowercase letter starting the next. A compound broken at its own
/// hyphen loses it (`user-` / `friendly` becomes `userfriendly`); that is the usual trade.
fn join_hyphenated(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let mut line = lines[i].trim_end().to_string();
        while let Some(next) = lines.get(i + 1) {
            let stem = line.strip_suffix('-').unwrap_or("");
            let before = stem.chars().last();
            let after = next.trim_start().chars().next();
            if !(before.is_some_and(char::is_lowercase) && after.is_some_and(char::is_lowercase)) {
                break;
            }
            let next = next.trim();
            let (word, rest) = next.split_at(next.find(char::is_whitespace).unwrap_or(next.len()));
            line = format!("{stem}{word}");
            i += 1;
            let rest = rest.trim_start();
            if !rest.is_empty() {
                // The rest of the next line stays on a line of its own.
                out.push_str(&line);
                out.push('\n');
                line = rest.to_string();
            }
        }
        out.push_str(&line);
        out.push('\n');
        i += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

/// Clean every page of a PDF (see the module). The result has one entry per page, in order;
/// a dropped page is empty.
pub fn clean_pages(pages: &[String]) -> Vec<String> {
    let split: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| p.lines().filter(|l| !l.trim().is_empty()).collect())
        .collect();
    // How often each shape is at a page's edge.
    let mut at_edges: std::collections::HashMap<String, usize> = Default::default();
    for lines in &split {
        let mut seen = std::collections::HashSet::new();
        let n = lines.len();
        for l in lines
            .iter()
            .take(EDGE)
            .chain(lines.iter().skip(n.saturating_sub(EDGE)))
        {
            let s = shape(l);
            if !s.is_empty() && seen.insert(s.clone()) {
                *at_edges.entry(s).or_default() += 1;
            }
        }
    }
    let running = |l: &str| {
        is_page_number(l)
            || is_chapter_header(l)
            || at_edges.get(&shape(l)).is_some_and(|n| *n >= REPEATS)
    };
    let bodies: Vec<Vec<&str>> = split
        .iter()
        .map(|lines| {
            let (mut lo, mut hi) = (0, lines.len());
            while lo < hi && lo < EDGE && running(lines[lo]) {
                lo += 1;
            }
            while hi > lo && lines.len() - hi < EDGE && running(lines[hi - 1]) {
                hi -= 1;
            }
            lines[lo..hi].to_vec()
        })
        .collect();
    let contents: Vec<bool> = bodies.iter().map(|b| is_contents_page(b)).collect();
    // A document that is all entries (an index on its own) keeps them: it has nothing else.
    let drop_contents = contents.iter().any(|c| !c);
    bodies
        .iter()
        .zip(&contents)
        .map(|(b, c)| {
            if drop_contents && *c {
                String::new()
            } else {
                join_hyphenated(&b.join("\n"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn running_headers_and_page_numbers_go_body_lines_stay() {
        let input = pages(&[
            "CHAPTER 1. BASICS 3\nDebian is a free operating system.\n3",
            "CHAPTER 1. BASICS 4\nIt is developed by volunteers.\n4",
            "CHAPTER 2. GETTING SUPPORT 5\nReport bugs to the bug tracking system.\n5",
            "CHAPTER 2. GETTING SUPPORT 6\nMailing lists answer questions.\n- 6 -",
        ]);
        let out = clean_pages(&input);
        assert_eq!(
            out,
            [
                "Debian is a free operating system.",
                "It is developed by volunteers.",
                "Report bugs to the bug tracking system.",
                "Mailing lists answer questions."
            ]
        );
    }

    #[test]
    fn a_line_repeated_on_three_pages_is_a_header_on_two_it_is_text() {
        let input = pages(&[
            "Lighthouse Keeping Manual\nLamps burn oil.",
            "Lighthouse Keeping Manual\nFog horns sound.",
            "Lighthouse Keeping Manual\nLogs are kept.",
        ]);
        assert_eq!(
            clean_pages(&input),
            ["Lamps burn oil.", "Fog horns sound.", "Logs are kept."]
        );
        let input = pages(&["Summary\nOne.", "Summary\nTwo.", "Other\nThree."]);
        assert_eq!(clean_pages(&input)[0], "Summary\nOne.");
    }

    #[test]
    fn contents_and_index_pages_are_dropped_and_pages_keep_their_numbers() {
        let input = pages(&[
            "Contents\n1 Basics . . . . . . . . 3\n1.1 What is Debian? . . . . 3\n\
             1.2 Who makes it? ........ 4\n2 Support . . . . . . . 5\n2.1 Bugs . . . . . 5",
            "Debian is a free operating system.",
            "Index\napt-get, 3, 17\ndpkg, 4\nbugs, 5, 6\nmailing lists, 6, 9\nreportbug, 5",
        ]);
        let out = clean_pages(&input);
        assert_eq!(out.len(), 3, "one entry per physical page");
        assert_eq!(out[0], "");
        assert_eq!(out[1], "Debian is a free operating system.");
        assert_eq!(out[2], "");
        // A page with a few references in running text stays.
        let prose = pages(&["See section 2.1 . . . for details, on page 5.\nMore text here.\nAnd more.\nStill prose.\nThe end."]);
        assert_eq!(clean_pages(&prose)[0].lines().count(), 5);
    }

    #[test]
    fn hyphenated_words_are_joined_at_line_ends_only() {
        assert_eq!(
            join_hyphenated("an equiv-\nalent package and a\nwell-known tool; X-\nWindow"),
            "an equivalent\npackage and a\nwell-known tool; X-\nWindow"
        );
        assert_eq!(
            join_hyphenated("a multi-\nline-\nbreak"),
            "a multilinebreak"
        );
    }
}
