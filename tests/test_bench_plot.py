"""bench/plot.py draws every plot from the JSON the benches write (matplotlib: in the `bench` and
`test` extras, so CI runs this)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _plot_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_plot", ROOT / "bench" / "plot.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(folder: Path) -> None:
    size = [{"logn": n, "ids_per_side": 1 << n, "system": sysname, "s": 0.1 * (1 << (n - 10)) * f,
             "load_avg": 1.0}
            for n in (10, 12) for sysname, f in (("mpcactors kkrt", 1.0), ("mpcactors ecdh", 5.0),
                                                 ("SPU RR22", 0.8), ("SPU ECDH-25519", 2.0))]
    size.append({"logn": 14, "ids_per_side": 1 << 14, "system": "mpcactors ecdh",
                 "not_run": "not run (> 2^12)"})
    conc = [{"protocol": "kkrt", "link": "loopback", "rtt_ms": rtt, "bandwidth_mbps": 100.0,
             "jobs": k, "logn": 8, "ids_per_job": 256, "serial_s": 0.3 * k, "concurrent_s": 0.2 * k,
             "load_avg": 1.0} for rtt in (0.0, 40.0) for k in (1, 4)]
    psi = {"bench": "psi_bench", "started": "2026-12-03T07:00:00+00:00", "machine": "test",
           "size": size, "memory": [], "concurrency": conc}
    compute = {"bench": "compute_bench", "started": "2026-12-03T07:00:00+00:00", "machine": "test",
               "args": {"reps": 1},
               "rows": [{"op": op, "setup": setup, "ours_s": 0.5, "rounds": 1, "mb": 1.0,
                         "check": "", "spu_s": spu, "spu_note": "", "ratio": None}
                        for op in ("mul", "lt")
                        for setup, spu in (("semi2k", 1.0), ("semi2k+dealer", None), ("rep3", 2.0))],
               "wan": []}
    loop = {"bench": "loop_bench", "started": "2026-12-03T07:00:00+00:00", "machine": "test",
            "lateness": [{"backend": b, "workload": w, "worst_lateness_ms": 40.0, "job_s": 5.0,
                          "load_avg": 1.0}
                         for b in ("asyncio", "trio") for w in ("matmul+lt", "mul1e7")],
            "pair": {"workload": "matmul+lt", "jobs": 2, "rtt_ms": 0.0, "serial_s": 10.0,
                     "concurrent_s": 12.0},
            "small": [{"jobs": 100, "rtt_ms": rtt, "concurrent_s": 3.0, "serial_measured_jobs": 50,
                       "serial_measured_s": 10.0, "serial_s": 20.0} for rtt in (0.0, 40.0)]}
    before = {"series": [{"label": "before: asyncio, recorded", "source": "recorded",
                          "lateness": [{"workload": "matmul+lt", "worst_lateness_ms": 1600}]}]}
    for name, data in (("psi_bench", psi), ("compute_bench", compute), ("loop_bench", loop),
                       ("loop_bench_before", before)):
        (folder / f"{name}.json").write_text(json.dumps(data))


def test_plot_draws_every_png(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "plots"
    results.mkdir()
    _write(results)
    assert _plot_module().main(["--results", str(results), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["compute_vs_spu.png", "concurrency.png", "lateness.png", "psi_time.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_skips_missing_json(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    assert _plot_module().main(["--results", str(tmp_path / "none"), "--out", str(out)]) == 0
    assert list(out.iterdir()) == []
