"""Writes an evaluation set in BEIR layout (shared by the make_eval_*.py scripts)."""
import json
import os


def write(out, name, corpus, queries, qrels):
    """corpus: [{_id, title, text}]; queries: [{_id, text}]; qrels: [(query id, corpus id)]."""
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for c in corpus:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "qrels", "test.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, c in qrels:
            f.write(f"{q}\t{c}\t1\n")
    print(f"{name}: {len(corpus)} passages, {len(queries)} queries -> {out}")
