#!/usr/bin/python3
"""The logic of benchmarks/scaling.py that runs no benchmark: sweep files
and their expansion into points, the per-point row (MFU against the peak of
the cores a point used, the step-time breakdown), the targets table and
warnings of the generated docs, and the plots, on a made-up report. Run by
ctest (scaling_test) with Debian's python3 (python3-yaml,
python3-matplotlib)."""
import copy
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scaling  # noqa: E402
import scaling_docs  # noqa: E402
import scaling_plots  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def point_result(sweep, label, fields, ranks=1, ep=1, threads=2, tokens_per_s=1000.0, experts=8, top_k=2):
    phases = {p: 0.01 for p in scaling.PHASES}
    return dict(sweep=sweep, label=label, fields=fields, ranks=ranks, ep=ep, threads_per_rank=threads,
                oversubscribed=ranks * threads > 2, num_experts=experts, top_k=top_k, d_model=128,
                expert_ffn_dim=256, micro_batch=16, seq_len=128, tokens_per_step=2048.0, step_s=0.18,
                tokens_per_s=tokens_per_s, flops_per_token=13e6, dropped_fraction=0.01, peak_rss_mib=[300.0, 310.0],
                validated_against=None if ranks == 1 else 9.0, phases_s=phases,
                times_s=dict(total=0.18, compute=0.15, dispatch=0.0, combine=0.0, grad_sync=0.01, optimizer=0.02))


PEAKS = {1: dict(peak_gflops=100.0, peak_size=512, triad_gb_per_s=10.0, blas_core="Cooperlake",
                 square=[dict(n=512, gflops=100.0)], expert=[]),
         2: dict(peak_gflops=200.0, peak_size=512, triad_gb_per_s=12.0, blas_core="Cooperlake",
                 square=[dict(n=512, gflops=200.0)],
                 expert=[dict(d_model=128, ffn=256, rows=r, gflops=50.0 + r / 100,
                              products=[dict(name=n, m=r, n=256, k=128, gflops=50.0 + r / 100, intensity=10.0 + r / 100)
                                        for n in ("fwd_up", "fwd_down", "bwd_dw_up", "bwd_dx", "bwd_dw_down")])
                         for r in (64, 1024)])}


def impl(ms, speedup=1.0, hf=False):
    s = dict(train_step_ms=ms, step_ms=ms * 0.9, fwd_ms=ms * 0.4, bwd_ms=ms * 0.5, adamw_ms=ms * 0.1,
             train_tokens_per_s=2048 / ms * 1e3, tokens_per_s=2048 / (0.9 * ms) * 1e3,
             train_step_ms_per_round=[ms, ms * 1.1], switchboard_speedup=speedup, switchboard_speedup_fwd_bwd=speedup)
    if hf:
        s.update(torch_version="2.x", transformers_version="5.x", attn_implementation="sdpa",
                 experts_implementation="grouped_mm", first_step_s=[60.0, 5.0], max_loss_diff=1e-7,
                 max_grad_rel_diff=2e-6)
    else:
        s.update(blas_core="Cooperlake")
    return s


def report(load="0.5"):
    spec = scaling.load_sweep(os.path.join(HERE, "sweeps", "quick.yaml"))
    base = dict(threads=2, rounds=2, iters=10, batch=8, seq_len=256, params=57.7e6, flops_per_token=126e6,
                model=dict(d_model=512), name="d512", title="d512",
                impls=dict(switchboard=impl(4000.0), hf_eager=impl(10000.0, 2.5, True), hf_compile=impl(5600.0, 1.4, True)))
    r = dict(sweep=spec, machine=dict(cpu="cpu", cores=2, hypervisor="KVM", memory_gib=24, os="os", kernel="k",
                                      compiler="gcc", openblas="0.3", commit="abc", dirty=False, date="today",
                                      build="/x/build"),
             load_start=[load] * 3, load_end=[load] * 3, minutes=1.0, peaks=copy.deepcopy(PEAKS), torch_gemm={},
             dropped_blas_env={"OPENBLAS_CORETYPE": "Haswell"}, baselines=[base])
    r["points"] = [point_result("experts", "num_experts=8", {"moe.num_experts": 8}),
                   point_result("capacity", "capacity_factor_train=0", {"moe.capacity_factor_train": 0}),
                   point_result("strong_scaling", "np 1, ep 1", {}),
                   point_result("strong_scaling", "np 2, ep 2", {}, ranks=2, ep=2, threads=1, tokens_per_s=900.0)]
    r["points"][0]["hf_eager"] = dict(train_tokens_per_s=500.0, switchboard_train_tokens_per_s=1100.0, speedup=2.2,
                                      max_grad_rel_diff=1e-6)
    r["rows"] = [scaling.flatten(p, r["peaks"], 2) for p in r["points"]]
    return r


class SweepFileTest(unittest.TestCase):
    def test_grid_zip_layouts(self):
        grid = scaling.points({"name": "e", "grid": {"moe.num_experts": [1, 2, 4], "moe.top_k": [1, 2]}})
        self.assertEqual([p[0] for p in grid], ["num_experts=1, top_k=1", "num_experts=2, top_k=1",
                                                "num_experts=2, top_k=2", "num_experts=4, top_k=1",
                                                "num_experts=4, top_k=2"])  # top-2 of 1 expert is skipped
        z = scaling.points({"name": "d", "zip": {"model.d_model": [64, 128], "model.num_heads": [2, 4]}})
        self.assertEqual([p[1] for p in z], [{"model.d_model": 64, "model.num_heads": 2},
                                            {"model.d_model": 128, "model.num_heads": 4}])
        weak = scaling.points({"name": "w", "micro_batches_per_rank": 2,
                               "layouts": [{"ranks": 1, "ep": 1}, {"ranks": 4, "ep": 2}]})
        self.assertEqual([(p[2], p[3], p[4]) for p in weak], [(1, 1, 2), (4, 2, 8)])
        strong = scaling.points({"name": "s", "global_micro_batches": 4, "layouts": [{"ranks": 2, "ep": 2}]})
        self.assertEqual(strong[0][4], 4)

    def test_shipped_sweeps_load(self):
        for name, count in (("default.yaml", 13 + 4 + 5 + 4 + 5 + 3), ("quick.yaml", 3 + 2 + 2)):
            spec = scaling.load_sweep(os.path.join(HERE, "sweeps", name))
            self.assertEqual(sum(len(scaling.points(s)) for s in spec["sweeps"]), count, name)

    def test_bad_sweep_is_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("name: x\nconfig: c\ncores: 2\nsteps: 1\nwarmup: 0\n"
                    "sweeps:\n  - name: a\n    grid: {moe.top_k: [1]}\n    zip: {moe.top_k: [1]}\n")
        with self.assertRaises(SystemExit) as e:
            scaling.load_sweep(f.name)
        self.assertIn("exactly one of", str(e.exception))
        os.unlink(f.name)


class RowTest(unittest.TestCase):
    def test_mfu_against_the_cores_used(self):
        r = report()
        one_rank = r["rows"][0]      # 1 rank x 2 threads: the 2-thread peak
        self.assertAlmostEqual(one_rank["gflops"], 1000 * 13e6 / 1e9)
        self.assertAlmostEqual(one_rank["mfu_measured"], 13.0 / 200.0, places=4)
        two_ranks = r["rows"][3]     # 2 ranks x 1 thread: also 2 cores
        self.assertAlmostEqual(two_ranks["mfu_measured"], 900 * 13e6 / 1e9 / 200.0, places=4)
        self.assertEqual(two_ranks["validated_loss"], 9.0)
        self.assertEqual(one_rank["validated_loss"], "one process")

    def test_breakdown_columns_add_up(self):
        row = report()["rows"][0]
        phases = sum(row[f"{p}_ms"] for p in scaling.PHASES)
        self.assertAlmostEqual(phases + row["other_compute_ms"], 150.0, places=3)  # compute time
        self.assertAlmostEqual(phases + row["other_compute_ms"] + row["grad_sync_ms"] + row["optimizer_ms"],
                               row["step_ms"], places=3)  # the trainer's phases add up to its step
        self.assertEqual(row["speedup_vs_hf_eager"], 2.2)
        self.assertEqual(row["peak_rss_mib"], 310.0)


class DocsTest(unittest.TestCase):
    def write(self, r):
        with tempfile.TemporaryDirectory() as d:
            path = scaling_docs.write(r, ["experts.png", "roofline.png"], os.path.join(d, "b.md"),
                                      os.path.join(HERE, "sweeps", "quick.yaml"))
            with open(path) as f:
                return f.read()

    def test_targets_table(self):
        text = self.write(report())
        self.assertIn("| training tokens/s >= 2.0x HF Mixtral, eager, d512 | 2.50x | yes |", text)
        self.assertIn("| training tokens/s >= 1.5x HF Mixtral, torch.compile, d512 | 1.40x | **no** |", text)
        # Forward + backward MFU at d512: 126 MFLOP x 2048 tokens in 3.6 s over 200 GFLOP/s.
        mfu = 126e6 * 2048 / 3.6 / 200e9
        self.assertIn(f"| {100 * mfu:.1f}% | **no** |", text)
        self.assertIn("`OPENBLAS_CORETYPE=Haswell`", text)
        self.assertNotIn("was shared", text)

    def test_load_warning(self):
        self.assertIn("**The machine was shared while this ran** (load average up to 9.0", self.write(report("9.0")))


class PlotTest(unittest.TestCase):
    def test_plots_are_written(self):
        with tempfile.TemporaryDirectory() as d:
            names = scaling_plots.plot_all(report(), d)
            self.assertEqual(names, ["experts.png", "breakdown.png", "ranks.png", "roofline.png", "capacity.png"])
            for n in names:
                self.assertGreater(os.path.getsize(os.path.join(d, n)), 5000, n)


if __name__ == "__main__":
    unittest.main()
