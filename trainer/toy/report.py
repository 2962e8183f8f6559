"""The demo's report: the comparison table (mean and spread over seeds, each run's bootstrap interval), the
context gap, where the per-token advantage lands; as report.json, report.md and report.html in the run folder.
Every number is read from what the run wrote (its eval reports, gap and analysis), never typed in."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

START = "start"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def condition_rows(evals: dict[str, Any], conditions: list[str]) -> list[dict[str, Any]]:
    """One row per condition (and the starting solver): greedy accuracy over seeds, and the sampled metrics."""
    greedy = {r["name"]: r for r in evals["greedy"]["checkpoints"]}
    sampled = {r["name"]: r for r in evals["sampled"]["checkpoints"]} if "sampled" in evals else {}
    rows = []
    for cond in [START, *conditions]:
        names = [n for n in greedy if n == cond or n.startswith(f"{cond} | seed ")]
        if not names:
            continue
        values = [greedy[n]["metrics"]["avg@k"]["value"] for n in names]
        row: dict[str, Any] = {
            "condition": cond,
            "seeds": len(names),
            "greedy_mean": round(sum(values) / len(values), 2),
            "greedy_min": min(values),
            "greedy_max": max(values),
            "per_seed": [{"name": n, **greedy[n]["metrics"]["avg@k"]} for n in names],
        }
        for metric in ("avg@k", "maj@k", "pass@k"):
            got = [sampled[n]["metrics"][metric]["value"] for n in names if n in sampled]
            row[metric] = round(sum(got) / len(got), 2) if got else None
        rows.append(row)
    return rows


def table_md(rows: list[dict[str, Any]], k: int, problems: int) -> str:
    head = "| condition | greedy accuracy, mean over seeds [min, max] | each seed [95% CI] |"
    sep = "|---|---|---|"
    if k:
        head += f" Avg@{k} | Maj@{k} | Pass@{k} |"
        sep += "---|---|---|"
    lines = [f"Held-out problems: {problems}; accuracy in %.", "", head, sep]
    for r in rows:
        seeds = "; ".join(f"{p['value']} [{p['ci95'][0]}, {p['ci95'][1]}]" for p in r["per_seed"])
        spread = f" [{r['greedy_min']}, {r['greedy_max']}]" if r["seeds"] > 1 else ""
        line = f"| {r['condition']} | {r['greedy_mean']}{spread} | {seeds} |"
        if k:
            line += f" {_pct(r['avg@k'])} | {_pct(r['maj@k'])} | {_pct(r['pass@k'])} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def gap_md(gap: dict[str, Any]) -> str:
    fb, ref = gap["feedback"], gap["refsol"]
    copies = "n/a" if fb["exact_copy_share"] is None else f"{100 * fb['exact_copy_share']:.0f}%"
    with_feedback = "n/a" if fb["accuracy"] is None else f"{100 * fb['accuracy']:.1f}%"
    return (
        f"Greedy accuracy of the starting solver on {gap['problems']} held-out problems:\n\n"
        "| prompt | accuracy |\n|---|---|\n"
        f"| student (the problem only) | {100 * gap['student']['accuracy']:.1f}% |\n"
        f"| StepAlignFB teacher: the critic's feedback on the student's own wrong attempt ({fb['attempts']} "
        f"attempts; {copies} exact copies of the corrected solution) | {with_feedback} |\n"
        f"| RefSol teacher: the reference solution (another derivation) | {100 * ref['accuracy']:.1f}% |\n"
    )


def localisation_md(loc: dict[str, Any]) -> str:
    lines = [
        f"Mean A_t = log p_teacher - log p_student on {loc['rollouts']} wrong rollouts of the starting solver "
        "(case D), by where the token is:",
        "",
        "| context | mean A_t: correct prefix | pivotal step | after it | share of negative mass: on the pivotal step "
        "| on it or after |",
        "|---|---|---|---|---|---|",
    ]
    for ctx, label in (("stepalign", "StepAlignFB"), ("refsol", "RefSol")):
        a = loc["aggregate"][ctx]
        f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"| {label} | {f(a['mean_prefix'])} | {f(a['mean_pivot'])} | {f(a['mean_after'])} | "
                     f"{f(a.get('negative_mass_at_pivot'))} | {f(a['negative_mass_at_or_after'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def closing(rows: list[dict[str, Any]], out: Path) -> str:
    by = {r["condition"]: r["greedy_mean"] for r in rows}
    start = by.get(START)
    parts = [f"{c} {v}%" for c, v in by.items() if c != START]
    best = max((c for c in by if c != START), key=lambda c: by[c], default=None)
    said = f"From {start}% at the start: " + ", ".join(parts) + "."
    if best is not None:
        said += f" Highest: {best}."
    return f"{said}\nReport: {out / 'report.md'} (and report.html, report.json; plots in {out / 'analysis'})."


def write_reports(report: dict[str, Any], out: Path) -> None:
    settings = report["settings"]
    conditions = list(settings["conditions"])
    rows = condition_rows(report["eval"], conditions)
    k = settings["sample_k"]
    report["table"] = rows
    report["table_md"] = table_md(rows, k, report["eval"]["greedy"]["problems"])
    report["closing"] = closing(rows, out)
    gap = {k2: v for k2, v in report["context_gap"].items() if k2 != "examples"}
    sections = ["# StepAlign demo: a tiny solver learning from step-aligned feedback", "", "## Comparison", "",
                report["table_md"], "## Context gap", "", gap_md(gap)]  # fmt: skip
    if "localisation" in report:
        sections += ["## Where the learning signal lands", "", localisation_md(report["localisation"])]
        sections += [f"![rollout {i}](analysis/{p})" for i, p in enumerate(report["localisation"]["pngs"][:4])]
        sections += ["", "Every token, coloured by A_t: [analysis/advantages.html](analysis/advantages.html)", ""]
    if report.get("example"):
        ex = report["example"]
        sections += ["## One rollout and its critique", "", "The student wrote:", "", "```", ex["student"], "```", ""]
        sections += ["The critic's feedback (the StepAlignFB teacher's context):", "", "```", ex["feedback"], "```", ""]
    sections += ["## Runs", "", "| condition | seed | run folder | seconds |", "|---|---|---|---|"]
    sections += [f"| {r['condition']} | {r['seed']} | {r['run']} | {r['seconds']:.0f} |" for r in report["runs"]]
    sections += ["", f"Phases (seconds): {json.dumps(report['phase_seconds'])}", "", report["closing"], ""]
    (out / "report.md").write_text("\n".join(sections), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "report.html").write_text(html_page(report), encoding="utf-8")


def _md_table_html(md: str) -> str:
    rows = [line for line in md.splitlines() if line.startswith("|") and not line.startswith("|---")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows]
    if not cells:
        return f"<p>{html.escape(md)}</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(report: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>StepAlign demo</title><style>body{font-family:"
        "sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid "
        "#ccc;padding:.3em .6em;text-align:left}pre{background:#f6f6f6;padding:.6em}</style></head><body>",
        "<h1>StepAlign demo: a tiny solver learning from step-aligned feedback</h1>",
        "<h2>Comparison</h2>",
        _md_table_html(report["table_md"]),
        "<h2>Context gap</h2>",
        _md_table_html(gap_md(report["context_gap"])),
    ]
    if "localisation" in report:
        parts += ["<h2>Where the learning signal lands</h2>", _md_table_html(localisation_md(report["localisation"]))]
        parts += [f"<img src='analysis/{html.escape(p)}' alt='rollout {i}' width='1000'>"
                  for i, p in enumerate(report["localisation"]["pngs"][:4])]  # fmt: skip
        parts.append("<p><a href='analysis/advantages.html'>Every token, coloured by A_t</a></p>")
    if report.get("example"):
        ex = report["example"]
        parts += ["<h2>One rollout and its critique</h2>", f"<pre>{html.escape(ex['student'])}</pre>",
                  f"<pre>{html.escape(ex['feedback'])}</pre>"]  # fmt: skip
    parts += [f"<p>{html.escape(report['closing'])}</p>", "</body></html>"]
    return "".join(parts)
