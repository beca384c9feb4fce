"""Benchmark result files → typed per-request records (`load_results`), for comparing and calibrating APEX
against measurements: `vllm bench serve` JSON, SGLang `bench_serving` JSONL, GenAI-Perf and AIPerf exports."""
