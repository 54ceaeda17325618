#!/usr/bin/env python3
"""Tenantry demo: start the server, create two tenants, ingest real documents through the HTTP
API, ask questions per tenant and print ranked, cited results; then write a bench report with
latency pictures where the console finds it, and print the console's address. Standard library
only."""
import json, os, secrets, signal, socket, statistics, subprocess, sys, time, urllib.error, urllib.request, uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / ".tenantry" / "docs"
DATA = ROOT / ".tenantry" / "demo"
BIN = ROOT / "target" / "release" / "tenantry"
# The bench keeps its own data (reused by the next demo); its report goes where the console
# looks: <data dir>/reports.
BENCH_DATA = ROOT / ".tenantry" / "demo-bench"
REPORT = DATA / "reports" / "bench.html"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"
ADMIN = "adm_demo_" + secrets.token_hex(16)

def call(method, path, key, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

def upload(key, path, doc_id, metadata):
    boundary = uuid.uuid4().hex
    ctype = {".pdf": "application/pdf", ".html": "text/html", ".md": "text/markdown"}.get(path.suffix, "text/plain")
    parts = []
    for name, value in (("id", doc_id), ("title", path.name), ("metadata", json.dumps(metadata))):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                 f'Content-Type: {ctype}\r\n\r\n'.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return call("POST", "/v1/documents", key, b"".join(parts), f"multipart/form-data; boundary={boundary}")

def follow(key, job_id, name):
    """Watch a job to its end, showing its stage and chunks; returns the final job."""
    tty, t0, last = sys.stdout.isatty(), time.perf_counter(), 0.0
    while True:
        status, job = call("GET", f"/v1/jobs/{job_id}", key)
        assert status == 200, job
        done, total = job.get("chunks_done", 0), job.get("chunks_total")
        secs = time.perf_counter() - t0
        if job["status"] in ("succeeded", "failed"):
            if tty:
                print("\r\033[K", end="")
            return job
        stage = job.get("stage") or job["status"]
        line = f"  {name}: {stage}"
        if total:
            rate = done / secs if secs > 0 else 0
            eta = f", ETA {(total - done) / rate:.0f} s" if rate > 0 and total > done else ""
            line += f" {done}/{total} chunks ({rate:.1f}/s{eta})"
        if tty:
            print("\r\033[K" + line, end="", flush=True)
        elif secs - last >= 5:
            print(line, flush=True)
            last = secs
        time.sleep(0.5)

def wait_ready(proc):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(BASE + "/readyz", timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    sys.exit("server did not become ready")

def show(tenant, key, question):
    status, body = call("POST", "/v1/query", key, {"query": question, "top_k": 3})
    print(f"\n[{tenant}] Q: {question}")
    if status != 200:
        print(f"  error {status}: {body}")
        return
    for i, r in enumerate(body["results"], 1):
        where = f"page {r['page']}" if r.get("page") else " > ".join(r.get("heading_path", [])) or "-"
        snippet = " ".join(r["snippet"].split())[:220]
        print(f"  {i}. [{r['score']:.4f}] {r['title']} | {where} | dense#{r['dense_rank']} bm25#{r['bm25_rank']}")
        print(f"     {snippet}")
    print(f"  ({body['timings_ms']['total']:.1f} ms)")

def answer(tenant, key, question):
    status, body = call("POST", "/v1/answer", key, {"question": question})
    print(f"\n[{tenant}] answer to: {question}")
    if status != 200:
        print(f"  error {status}: {body}")
        return
    print("  " + " ".join(body["answer"].split()))
    for c in body["citations"]:
        where = f"page {c['page']}" if c.get("page") else c.get("heading") or "-"
        quote = " ".join(c["quote"].split())
        print(f"    [{c['n']}] {c['title']} | {where} | \"{quote[:110]}\"")
    status_line = "grounded" if body["grounded"] else f"not grounded: {body.get('code')}"
    print(f"  ({status_line}; evidence {body['evidence']:.2f}; {body['timings_ms']['total']:.0f} ms)")

def latency(key, questions, mode, rounds=5):
    samples = []
    for _ in range(rounds):
        for q in questions:
            t = time.perf_counter()
            status, _ = call("POST", "/v1/query", key, {"query": q, "mode": mode})
            assert status == 200
            samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)

def answer_latency(key, questions, rounds=3):
    samples = []
    for _ in range(rounds):
        for q in questions:
            t = time.perf_counter()
            status, _ = call("POST", "/v1/answer", key, {"question": q})
            assert status == 200
            samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)

def bench_report():
    """A short `tenantry bench` (its own server and data), written as a report with pictures:
    latency distributions per mode, QPS and latency against 1-8 clients."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    print(f"\nbench: 2 tenants, hybrid/dense/bm25 at 4 clients, hybrid at 1, 2, 4 and 8 clients (about a minute)")
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN), "--data-dir", str(BENCH_DATA), "bench", "--tenants", "2",
                          "--chunks-per-tenant", "100", "--duration", "3", "--modes", "hybrid,dense,bm25",
                          "--noisy-seconds", "0", "--ingest-docs", "1", "--cold-tenants", "2",
                          "--sweep", "1,2,4,8", "--report", str(REPORT)],
                         cwd=ROOT, env=dict(os.environ, TENANTRY_LOG="error"), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench failed:\n{out.stdout}{out.stderr}")
    print("\n".join("  " + l for l in out.stdout.splitlines() if l.startswith("|") or "against" in l))
    print(f"  ({time.perf_counter() - t0:.0f} s; report: {REPORT.relative_to(ROOT)})")

TENANTS = {
    "debian": {
        "files": [DOCS / "debian-faq" / "debian-faq.en.pdf"],
        "questions": ["How do I install a package with apt?",
                      "What is the difference between stable and testing?",
                      "Where can I report a bug in Debian?"],
        "answer": "Where can I report a bug in Debian?",
        "refusal": "What is the boiling point of tungsten in kelvin?",
    },
    "pydocs": {
        "files": sorted((DOCS / "python-tutorial").glob("*.html")),
        "questions": ["How do I define a function with default argument values?",
                      "What is a list comprehension?",
                      "How do I handle exceptions with try and except?"],
        "answer": "What is a list comprehension?",
    },
}

def main():
    if not BIN.exists():
        sys.exit("build first: make build")
    for t in TENANTS.values():
        missing = [f for f in t["files"] if not f.exists()]
        if missing or not t["files"]:
            sys.exit(f"missing documents ({missing or 'none found'}): run make setup")
    subprocess.run(["rm", "-rf", str(DATA)], check=True)
    env = dict(os.environ, TENANTRY_ADMIN_KEY=ADMIN, TENANTRY_LOG="warn,qdrant_edge=error")
    proc = subprocess.Popen([str(BIN), "--data-dir", str(DATA), "serve", "--listen", f"127.0.0.1:{PORT}"], cwd=ROOT, env=env)
    try:
        wait_ready(proc)
        print(f"tenantry serving on {BASE} (data in {DATA})")
        keys = {}
        for tenant, spec in TENANTS.items():
            status, body = call("POST", "/v1/tenants", ADMIN, {"id": tenant})
            assert status == 201, body
            keys[tenant] = body["api_key"]
            # Every file is queued first, so the server can parse the next while it embeds one.
            t0, chunks, jobs = time.perf_counter(), 0, []
            for f in spec["files"]:
                status, accepted = upload(keys[tenant], f, f.stem, {"source": tenant})
                if status != 202:
                    print(f"  {f.name}: {status} {accepted}")
                    continue
                jobs.append((f, accepted["job_id"]))
            for f, job_id in jobs:
                job = follow(keys[tenant], job_id, f.name)
                if job["status"] != "succeeded":
                    print(f"  {f.name}: {job.get('error')}")
                    continue
                chunks += job["chunks_total"]
            secs = time.perf_counter() - t0
            print(f"[{tenant}] ingested {len(spec['files'])} file(s), {chunks} chunks in {secs:.1f} s ({chunks / secs:.1f} chunks/s)")
        for tenant, spec in TENANTS.items():
            for q in spec["questions"]:
                show(tenant, keys[tenant], q)
        print("\ngrounded answers (extractive generator, no LLM):")
        for tenant, spec in TENANTS.items():
            answer(tenant, keys[tenant], spec["answer"])
            if "refusal" in spec:
                answer(tenant, keys[tenant], spec["refusal"])
        print("\nlatency over HTTP, p50 (ms):")
        for tenant, spec in TENANTS.items():
            row = {m: latency(keys[tenant], spec["questions"], m) for m in ("hybrid", "dense", "bm25")}
            row["answer"] = answer_latency(keys[tenant], spec["questions"])
            print(f"  {tenant:8} " + "  ".join(f"{m} {v:6.1f}" for m, v in row.items()))
        bench_report()
        lines = [f"operator (admin key):  {ADMIN}"] + [f"tenant {t + ':':14} {keys[t]}" for t in TENANTS]
        key_file = DATA / "keys.txt"
        key_file.write_text("\n".join(lines) + "\n")
        key_file.chmod(0o600)
        print(f"\nweb console: {BASE}/console")
        print(f"  the bench report is on its Reports page (and in {REPORT.relative_to(ROOT)})")
        if sys.stdin.isatty():
            for line in lines:
                print("  " + line)
            try:
                input("press Enter to stop the server\n")
            except (EOFError, KeyboardInterrupt):
                pass
        else:
            # Not at a terminal (CI, a pipe): no keys in the log, and the server stops now.
            print(f"  not a terminal, so the server stops now; the keys are in {key_file.relative_to(ROOT)}.\n"
                  f"  To serve this data again: TENANTRY_ADMIN_KEY=<the admin key> {BIN.relative_to(ROOT)} "
                  f"--data-dir {DATA.relative_to(ROOT)} serve --listen 127.0.0.1:{PORT}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    print("server stopped")

if __name__ == "__main__":
    main()
