"""Reading the results of ``tools/gpu_check.py``'s steps and writing its markdown report."""
import xml.etree.ElementTree as ET


def junit_counts(path):
    """{tests, failures, errors, skipped, passed} of a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def ddp_summary(out):
    """Epochs clustered and last clusters of a 2-process run (the ``pseudo/*`` scalars of its metrics.json)."""
    from canu_plugin.engine.run_files import epoch_records
    log = epoch_records(out)["pseudo"]
    if not log:
        raise RuntimeError(f"{out}/metrics.json has no pseudo/* scalars: the run clustered nothing")
    return {"epochs": len(log), "num_clusters": log[-1].get("num_clusters"), "knn_s": log[-1].get("clustering_knn_s")}


def header(env):
    gpu = (f"{env['gpus']} x {env['gpu']} ({env['gpu_mem_gib']} GiB, sm {env['capability']})"
           if env["cuda_available"] else "no CUDA device (CPU sizes)")
    return (f"gpu-check {env['date']}: {gpu}; torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}, "
            f"{env['cpus']} CPU cores")


def progress_line(row):
    why = f" ({row['why']})" if row.get("why") else ""
    err = f": {row['result']}" if row["status"] == "failed" else ""
    secs = f" {row['seconds']:.0f} s" if "seconds" in row else ""
    return f"[gpu-check] {row['step']:7s} {row['item']}: {row['status']}{secs}{why}{err}"


def _f(v, fmt=".1f"):
    return "-" if v is None else format(v, fmt)


def _train_table(rows):
    out = ["| method | device | batch | images/s | with / without discriminator | AMP asked / applied | peak GPU GiB |",
           "|---|---|---|---|---|---|---|"]
    base = None
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['item']} | {r['status']}: {r.get('result', r.get('why'))} | | | | | |")
            continue
        res = r["result"]
        ratio = "-"
        if not r["discriminator"]:
            base = res["images_per_s"]
        elif base:
            ratio = f"{res['images_per_s'] / base:.2f}"
        out.append(f"| {r['item']} | {res['device']} | {res['batch']} | {res['images_per_s']:.0f} | {ratio} | "
                   f"{res['amp_asked']} / {res['amp_applied']} ({res['trainer']}) | {_f(res['peak_gpu_gib'])} |")
    return out


def _cluster_table(rows):
    out = ["| N x D | backend (precision) | features s | k-NN s | Jaccard s | DBSCAN s | clustering s | "
           "peak host GiB | peak GPU GiB | clusters | ARI vs ids |", "|" + "---|" * 11]
    for r in rows:
        if r["status"] != "ok":
            continue
        c = r["result"]
        out.append(f"| {c['n']} x {c['dim']} | {c['backend']} ({c['precision']}) | {c['gen_s']:.1f} | {c['knn_s']:.1f} | "
                   f"{c['jaccard_s']:.1f} | {c['dbscan_s']:.1f} | {c['total_s']:.1f} | {c['peak_host_gib']:.1f} | "
                   f"{_f(c['peak_gpu_gib'])} | {c['num_clusters']} | {c['ari_gt']:.3f} |")
    return out


def _eval_table(rows):
    out = ["| query x gallery | device | seconds | mAP | R1 | peak GPU GiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] == "ok":
            e = r["result"]
            out.append(f"| {e['q']} x {e['g']} | {e['device']} | {e['seconds']:.2f} | {e['mAP']:.1f} | {e['R1']:.1f} | "
                       f"{_f(e['peak_gpu_gib'])} |")
    return out


def markdown(data):
    """The report: environment, one line per step item, then the training, clustering and evaluator tables."""
    rows = data["rows"]
    lines = [f"# {header(data['environment'])}", "", f"Total {data['total_s']:.0f} s.", "",
             "| step | item | status | seconds | note |", "|---|---|---|---|---|"]
    for r in rows:
        note = r.get("why") or (r["result"] if r["status"] == "failed" else "")
        if r["step"] == "tests" and isinstance(r.get("result"), dict):
            note = (note + "; " if note else "") + ", ".join(f"{k} {v}" for k, v in r["result"].items())
        lines.append(f"| {r['step']} | {r['item']} | {r['status']} | {_f(r.get('seconds'), '.0f')} | {note} |")
    by = {s: [r for r in rows if r["step"] == s and r["status"] != "skipped"] for s in ("train", "cluster", "eval")}
    if by["train"]:
        cpu = not data["environment"]["cuda_available"]
        lines += ["", "Training (last epoch's steps, data loading included" +
                  ("; CPU smoke runs of one tiny epoch: not throughput figures" if cpu else "") + "):", ""]
        lines += _train_table(by["train"])
    if by["cluster"]:
        lines += ["", "Clustering (synthetic features; k-NN -> Jaccard -> DBSCAN):", ""] + _cluster_table(by["cluster"])
    if by["eval"]:
        lines += ["", "Evaluator (synthetic features, features -> CMC/mAP):", ""] + _eval_table(by["eval"])
    return "\n".join(lines) + "\n"
