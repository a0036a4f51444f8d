"""Writes BENCHMARKS.md from the result files the bench scripts wrote in bench/results/.

    python bench/assemble.py
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["logmel", "logmel_accuracy", "default_model", "live_models", "models", "distill",
         "teachers", "musicnn_vs_tf", "cold_start", "int8", "stream", "tag_file_memory", "sources", "sources_default", "left_context",
         "chaos", "chaos_short", "triton", "ray", "gpu_check", "interpret_contribution"]
HEADER = """# Benchmarks

Measured on this project's 2-core, 24 GB development machine (no GPU; the GPU check's section
says where it ran), which is shared: other jobs were running, so absolute timings are noisy. Each table compares implementations **in the
same run**, and every section names the command that produced it. Re-run any script in `bench/`
to reproduce; `python bench/assemble.py` rebuilds this file from `bench/results/`.
"""


def main() -> None:
    results = ROOT / "bench" / "results"
    names = [n for n in ORDER if (results / f"{n}.md").exists()]
    names += sorted(p.stem for p in results.glob("*.md") if p.stem not in ORDER)
    parts = [HEADER] + [(results / f"{n}.md").read_text().strip() + "\n" for n in names]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"BENCHMARKS.md: {', '.join(names)}")


if __name__ == "__main__":
    main()
