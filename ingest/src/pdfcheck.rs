//! Checks a PDF's structure before `pdf-extract` walks it. `pdf-extract` inflates every stream
//! it reads in full and follows Form XObjects and page-tree parents by recursion, so a few
//! hundred hostile bytes can ask it for gigabytes or an unbounded stack. Here the same object
//! graph is walked with explicit stacks and streams are inflated with a running budget:
//! the classes (compression bombs, reference cycles, deep chains) fail with a code instead.
use std::collections::{HashMap, HashSet};
use std::io::Read;

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::error::IngestError;
use crate::parse::ParseLimits;

pub fn check(bytes: &[u8], limits: &ParseLimits) -> Result<(), IngestError> {
    let doc = Document::load_mem(bytes).map_err(|e| IngestError::PdfCorrupt(e.to_string()))?;
    decompressed_budget(&doc, limits.max_decompressed_bytes)?;
    form_graph(&doc, limits.max_depth)?;
    parent_chains(&doc, limits.max_depth)?;
    Ok(())
}

fn name_is(dict: &Dictionary, key: &[u8], value: &[u8]) -> bool {
    matches!(dict.get(key), Ok(Object::Name(n)) if n == value)
}

/// Inflate every Flate stream with a running budget. Images count too: a content stream can
/// claim to be an image and still be drawn. Other encodings (LZW, Flate behind ASCII85) count
/// at their encoded size here; what they inflate to is bounded by the worker's address space
/// and deadline instead (`document_too_complex`, `parser_timeout`).
fn decompressed_budget(doc: &Document, budget: u64) -> Result<(), IngestError> {
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for object in doc.objects.values() {
        let Object::Stream(stream) = object else {
            continue;
        };
        let filters = stream.filters().unwrap_or_default();
        let flate_only =
            filters.len() == 1 && (filters[0] == b"FlateDecode" || filters[0] == b"Fl");
        if flate_only {
            let mut reader = flate2::read::ZlibDecoder::new(stream.content.as_slice());
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        total += n as u64;
                        if total > budget {
                            return Err(IngestError::DecompressedTooLarge(budget));
                        }
                    }
                }
            }
        } else {
            total += stream.content.len() as u64;
        }
        if total > budget {
            return Err(IngestError::DecompressedTooLarge(budget));
        }
    }
    Ok(())
}

fn deref<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Object> {
    doc.dereference(object).ok().map(|(_, o)| o)
}

/// Where a reference finally points (lopdf follows chains of references the same way).
fn target(doc: &Document, mut id: ObjectId) -> Option<(ObjectId, &Object)> {
    for _ in 0..32 {
        match doc.objects.get(&id)? {
            Object::Reference(next) => id = *next,
            other => return Some((id, other)),
        }
    }
    None
}

fn is_form(o: &Object) -> bool {
    matches!(o, Object::Stream(s) if name_is(&s.dict, b"Subtype", b"Form"))
}

/// The Form XObjects a resource dictionary's `/XObject` names, one entry per name.
fn forms_in(doc: &Document, resources: Option<&Object>) -> Vec<ObjectId> {
    let Some(Object::Dictionary(resources)) = resources.and_then(|r| deref(doc, r)) else {
        return vec![];
    };
    let Some(Object::Dictionary(xobjects)) =
        resources.get(b"XObject").ok().and_then(|x| deref(doc, x))
    else {
        return vec![];
    };
    xobjects
        .iter()
        .filter_map(|(_, v)| match v {
            Object::Reference(id) => target(doc, *id),
            _ => None,
        })
        .filter(|(_, o)| is_form(o))
        .map(|(id, _)| id)
        .collect()
}

/// Most Form XObject draws one document may cause, counting repeats: forms that each draw the
/// next one twice, 256 deep, are 2^256 draws without being deep or cyclic.
const MAX_FORM_DRAWS: u64 = 100_000;

/// Form XObjects drawing Form XObjects: no cycle, no chain deeper than `max_depth`, no more
/// than [`MAX_FORM_DRAWS`] draws in all. A form without `/Resources` uses the resources of
/// whatever draws it (pdf-extract does the same), so its edges are those of its drawers.
fn form_graph(doc: &Document, max_depth: u32) -> Result<(), IngestError> {
    let mut own: HashMap<ObjectId, Option<Vec<ObjectId>>> = HashMap::new();
    for (id, object) in &doc.objects {
        if let Object::Stream(s) = object {
            if name_is(&s.dict, b"Subtype", b"Form") {
                let named = s
                    .dict
                    .get(b"Resources")
                    .ok()
                    .map(|r| forms_in(doc, Some(r)));
                own.insert(*id, named);
            }
        }
    }
    // Roots: forms that pages name (pages inherit resources from their parents).
    let mut roots: Vec<ObjectId> = Vec::new();
    for object in doc.objects.values() {
        if let Object::Dictionary(d) = object {
            if name_is(d, b"Type", b"Page") {
                roots.extend(forms_in(doc, inherited_resources(doc, d)));
            }
        }
    }
    // A form without resources draws what its drawer's resources name; resolve to a fixpoint
    // (bounded: each round can only add edges).
    let mut edges: HashMap<ObjectId, Vec<ObjectId>> = own
        .iter()
        .map(|(id, named)| (*id, named.clone().unwrap_or_default()))
        .collect();
    // Only forms that draw something (a `/Name Do` in their content) can recurse.
    let inherits: Vec<ObjectId> = own
        .iter()
        .filter(|(id, n)| n.is_none() && draws_xobjects(doc, **id))
        .map(|(id, _)| *id)
        .collect();
    if !inherits.is_empty() {
        let page_named: Vec<ObjectId> = roots.clone();
        for _ in 0..4 {
            let mut changed = false;
            let drawers: Vec<(ObjectId, Vec<ObjectId>)> =
                edges.iter().map(|(k, v)| (*k, v.clone())).collect();
            for f in &inherits {
                let mut add: Vec<ObjectId> = Vec::new();
                if page_named.contains(f) {
                    add.extend(page_named.iter().copied());
                }
                for (_, named) in drawers.iter().filter(|(_, named)| named.contains(f)) {
                    add.extend(named.iter().copied());
                }
                let e = edges.entry(*f).or_default();
                for a in add {
                    if !e.contains(&a) {
                        e.push(a);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }
    // Longest chain and number of draws below each form, by an iterative depth-first search;
    // a form met again while it is still on the path is a cycle.
    let mut depth: HashMap<ObjectId, (u32, u64)> = HashMap::new();
    let mut on_path: HashSet<ObjectId> = HashSet::new();
    let empty = Vec::new();
    let mut starts: Vec<ObjectId> = edges.keys().copied().collect();
    starts.sort();
    for root in starts {
        if depth.contains_key(&root) {
            continue;
        }
        let mut stack: Vec<(ObjectId, usize)> = vec![(root, 0)];
        on_path.insert(root);
        while let Some((node, next)) = stack.last().copied() {
            let children = edges.get(&node).unwrap_or(&empty);
            if let Some(&child) = children.get(next) {
                stack.last_mut().expect("non-empty").1 += 1;
                if on_path.contains(&child) {
                    return Err(IngestError::TooComplex(
                        "a Form XObject draws itself (reference cycle)".into(),
                    ));
                }
                if !depth.contains_key(&child) {
                    on_path.insert(child);
                    stack.push((child, 0));
                }
                continue;
            }
            let below = children.iter().filter_map(|c| depth.get(c));
            let d = 1 + below.clone().map(|(d, _)| *d).max().unwrap_or(0);
            let draws = below
                .map(|(_, n)| *n)
                .fold(1u64, |a, n| a.saturating_add(n));
            if d > max_depth {
                return Err(IngestError::TooComplex(format!(
                    "Form XObjects nest deeper than {max_depth}"
                )));
            }
            if draws > MAX_FORM_DRAWS {
                return Err(IngestError::TooComplex(format!(
                    "Form XObjects draw each other more than {MAX_FORM_DRAWS} times"
                )));
            }
            depth.insert(node, (d, draws));
            on_path.remove(&node);
            stack.pop();
        }
    }
    let total = roots
        .iter()
        .filter_map(|r| depth.get(r))
        .fold(0u64, |a, (_, n)| a.saturating_add(*n));
    if total > MAX_FORM_DRAWS {
        return Err(IngestError::TooComplex(format!(
            "Form XObjects are drawn more than {MAX_FORM_DRAWS} times"
        )));
    }
    Ok(())
}

/// Whether a form's content has a `/Name Do` (draws an XObject). Content is inflated up to
/// 16 MiB for the look; the budget check has already bounded the whole document.
fn draws_xobjects(doc: &Document, form: ObjectId) -> bool {
    let Some(Object::Stream(s)) = doc.objects.get(&form) else {
        return false;
    };
    let filters = s.filters().unwrap_or_default();
    let content: Vec<u8> = if filters.is_empty() {
        s.content.clone()
    } else if filters.len() == 1 && (filters[0] == b"FlateDecode" || filters[0] == b"Fl") {
        let mut out = Vec::new();
        let _ = flate2::read::ZlibDecoder::new(s.content.as_slice())
            .take(16 << 20)
            .read_to_end(&mut out);
        out
    } else {
        // Cannot look inside: assume it may draw.
        return true;
    };
    let mut previous: &[u8] = b"";
    for token in content
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
    {
        if token == b"Do" && previous.starts_with(b"/") {
            return true;
        }
        previous = token;
    }
    false
}

/// A page's `/Resources`, or the nearest ancestor's (at most 64 hops; loops are refused
/// separately by [`parent_chains`]).
fn inherited_resources<'a>(doc: &'a Document, page: &'a Dictionary) -> Option<&'a Object> {
    let mut node = page;
    for _ in 0..64 {
        if let Ok(r) = node.get(b"Resources") {
            return Some(r);
        }
        let Ok(Object::Reference(parent)) = node.get(b"Parent") else {
            return None;
        };
        match target(doc, *parent) {
            Some((_, Object::Dictionary(d))) => node = d,
            _ => return None,
        }
    }
    None
}

/// Page-tree nodes inherit attributes from their `/Parent`s: no chain may loop or run deeper
/// than `max_depth`.
fn parent_chains(doc: &Document, max_depth: u32) -> Result<(), IngestError> {
    let mut known_ok: HashSet<ObjectId> = HashSet::new();
    for (id, object) in &doc.objects {
        let Object::Dictionary(dict) = object else {
            continue;
        };
        if !(name_is(dict, b"Type", b"Page") || name_is(dict, b"Type", b"Pages")) {
            continue;
        }
        let mut seen = vec![*id];
        let mut current = dict;
        while let Ok(Object::Reference(parent)) = current.get(b"Parent") {
            if known_ok.contains(parent) {
                break;
            }
            if seen.contains(parent) || seen.len() as u32 > max_depth {
                return Err(IngestError::TooComplex(
                    "the page tree loops or nests too deep".into(),
                ));
            }
            seen.push(*parent);
            match target(doc, *parent) {
                Some((id, Object::Dictionary(d))) => {
                    if id != *parent {
                        if seen.contains(&id) {
                            return Err(IngestError::TooComplex(
                                "the page tree loops or nests too deep".into(),
                            ));
                        }
                        seen.push(id);
                    }
                    current = d
                }
                _ => break,
            }
        }
        known_ok.extend(seen);
    }
    Ok(())
}
