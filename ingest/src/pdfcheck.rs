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

/// Inflate what `pdf-extract` may inflate (everything but images), stopping at the budget.
fn decompressed_budget(doc: &Document, budget: u64) -> Result<(), IngestError> {
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for object in doc.objects.values() {
        let Object::Stream(stream) = object else {
            continue;
        };
        if name_is(&stream.dict, b"Subtype", b"Image") {
            continue;
        }
        let filters = stream.filters().unwrap_or_default();
        let inflates = filters
            .first()
            .is_some_and(|f| *f == b"FlateDecode" || *f == b"Fl");
        if !inflates {
            total += stream.content.len() as u64;
        } else {
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

/// The Form XObjects a dictionary's `/Resources /XObject` names.
fn forms_named_by(doc: &Document, dict: &Dictionary) -> Vec<ObjectId> {
    let Some(Object::Dictionary(resources)) =
        dict.get(b"Resources").ok().and_then(|r| deref(doc, r))
    else {
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
            Object::Reference(id) => Some(*id),
            _ => None,
        })
        .filter(|id| {
            matches!(doc.objects.get(id), Some(Object::Stream(s)) if name_is(&s.dict, b"Subtype", b"Form"))
        })
        .collect()
}

/// Form XObjects drawing Form XObjects: no cycle, no chain deeper than `max_depth`.
fn form_graph(doc: &Document, max_depth: u32) -> Result<(), IngestError> {
    let mut edges: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for (id, object) in &doc.objects {
        if let Object::Stream(s) = object {
            if name_is(&s.dict, b"Subtype", b"Form") {
                edges.insert(*id, forms_named_by(doc, &s.dict));
            }
        }
    }
    // Longest chain below each form, by an iterative depth-first search; a form met again while
    // it is still on the path is a cycle.
    let mut depth: HashMap<ObjectId, u32> = HashMap::new();
    let mut on_path: HashSet<ObjectId> = HashSet::new();
    for &root in edges.keys() {
        if depth.contains_key(&root) {
            continue;
        }
        let mut stack: Vec<(ObjectId, usize)> = vec![(root, 0)];
        on_path.insert(root);
        while let Some((node, next)) = stack.last().copied() {
            let children = &edges[&node];
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
            let d = 1 + children
                .iter()
                .map(|c| depth.get(c).copied().unwrap_or(0))
                .max()
                .unwrap_or(0);
            if d > max_depth {
                return Err(IngestError::TooComplex(format!(
                    "Form XObjects nest deeper than {max_depth}"
                )));
            }
            depth.insert(node, d);
            on_path.remove(&node);
            stack.pop();
        }
    }
    Ok(())
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
            match doc.objects.get(parent) {
                Some(Object::Dictionary(d)) => current = d,
                _ => break,
            }
        }
        known_ok.extend(seen);
    }
    Ok(())
}
