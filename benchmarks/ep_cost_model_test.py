#!/usr/bin/env python3
"""Arithmetic of benchmarks/ep_cost_model.py: parameter counts against
Mixtral's published ones, each alpha-beta term against its formula worked
by hand, the overlap bounds, the alpha-beta fit, and invariants a reader
relies on (overlap never makes a step slower; MFU is FLOPs over time x peak).
Run by ctest (ep_cost_model_test); standard library only."""
import json
import math
import os
import sys
import tempfile
import unittest
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ep_cost_model as m  # noqa: E402


class ShapeTest(unittest.TestCase):
    def test_mixtral_parameter_counts(self):
        # Mistral AI: 46.7B total, 12.9B active (the active count includes the
        # input embedding, which is a lookup rather than a matmul).
        self.assertAlmostEqual(m.MIXTRAL.total_params() / 1e9, 46.7, delta=0.05)
        active = m.MIXTRAL.active_matmul_params() + m.MIXTRAL.vocab * m.MIXTRAL.d_model
        self.assertAlmostEqual(active / 1e9, 12.9, delta=0.05)

    def test_fine_grained_keeps_total_and_active(self):
        self.assertEqual(m.FINE.experts * m.FINE.expert_ffn, m.MIXTRAL.experts * m.MIXTRAL.expert_ffn)
        self.assertEqual(m.FINE.top_k * m.FINE.expert_ffn, m.MIXTRAL.top_k * m.MIXTRAL.expert_ffn)
        self.assertAlmostEqual(m.FINE.active_matmul_params() / m.MIXTRAL.active_matmul_params(), 1,
                               delta=1e-3)

    def test_flops_per_token(self):
        s = m.MIXTRAL
        self.assertEqual(s.flops_per_token(),
                         6 * s.active_matmul_params() + 12 * 32 * 4096 * 4096)


class TermsTest(unittest.TestCase):
    hw = replace(m.H100, alpha_nvlink=7e-6, alpha_nic=11e-6, alpha_peer=0.5e-6)

    def test_link_time(self):
        self.assertAlmostEqual(m.link_time(1e9, 1e12, 100e9, 0), 1e9 / 100e9, places=15)
        # A message of m_half bytes gets half the bandwidth.
        self.assertAlmostEqual(m.link_time(1e6, 1000, 1e9, 1000), 2e-3)
        self.assertEqual(m.link_time(0, 1, 1, 1), 0.0)

    def test_all_to_all_inside_a_node(self):
        hw = self.hw
        self.assertEqual(m.all_to_all_time(1e6, 1, hw, False), 0.0)
        nbytes, ep = 64 * 2**20, 8
        per_peer = nbytes / ep
        bw = hw.nvlink * per_peer / (per_peer + m.NVLINK_M_HALF)
        expected = 7e-6 + 7 * 0.5e-6 + nbytes * 7 / 8 / bw
        self.assertAlmostEqual(m.all_to_all_time(nbytes, ep, hw, False), expected, places=12)
        # Inside one node hierarchical is the same call.
        self.assertEqual(m.all_to_all_time(nbytes, ep, hw, True), expected)

    def test_all_to_all_across_nodes(self):
        hw = self.hw
        nbytes, ep = 32 * 2**20, 32  # 4 nodes of 8
        per_peer = nbytes / ep
        local = nbytes * 7 / 32 / (hw.nvlink * per_peer / (per_peer + m.NVLINK_M_HALF))
        remote = nbytes * 24 / 32 / (hw.nic * per_peer / (per_peer + m.NIC_M_HALF))
        flat = 11e-6 + 31 * 0.5e-6 + max(local, remote)
        self.assertAlmostEqual(m.all_to_all_time(nbytes, ep, hw, False), flat, places=12)
        m1, m2 = nbytes / 8, nbytes / 4
        stage1 = 7e-6 + 7 * 0.5e-6 + nbytes * 7 / 8 / (hw.nvlink * m1 / (m1 + m.NVLINK_M_HALF))
        stage2 = 11e-6 + 3 * 0.5e-6 + nbytes * 3 / 4 / (hw.nic * m2 / (m2 + m.NIC_M_HALF))
        hier = stage1 + stage2 + 4 * nbytes / hw.hbm
        self.assertAlmostEqual(m.all_to_all_time(nbytes, ep, hw, True), hier, places=12)

    def test_hierarchical_wins_only_on_small_messages(self):
        # Latency-bound: 31 peer messages vs 7 + 3; bandwidth-bound: flat moves
        # the NVLink and NIC shares at once, ours one after the other.
        hw = replace(m.H100, alpha_peer=5e-6)
        self.assertLess(m.all_to_all_time(2**16, 32, hw, True), m.all_to_all_time(2**16, 32, hw, False))
        self.assertGreater(m.all_to_all_time(2**28, 32, hw, True),
                           m.all_to_all_time(2**28, 32, hw, False))

    def test_ring_all_reduce(self):
        self.assertEqual(m.ring_all_reduce_time(1e9, 1, 1e9, 1), 0.0)
        self.assertAlmostEqual(m.ring_all_reduce_time(1e9, 2, 1e9, 1e-5), 1.0 + 2e-5)
        self.assertAlmostEqual(m.ring_all_reduce_time(8e9, 8, 1e9, 0), 14.0)

    def test_group_spans_nodes(self):
        hw = m.H100
        self.assertFalse(m.group_spans_nodes(8, 1, hw))
        self.assertTrue(m.group_spans_nodes(9, 1, hw))
        self.assertTrue(m.group_spans_nodes(2, 8, hw))  # EDP replicas one node apart
        self.assertFalse(m.group_spans_nodes(1, 8, hw))

    def test_exposed_all_to_all_bounds(self):
        self.assertEqual(m.exposed_all_to_all(3.0, 10.0, 1), 3.0)
        self.assertEqual(m.exposed_all_to_all(3.0, 10.0, 4), 0.75)  # all but one chunk hides
        for a, x, c in [(5.0, 2.0, 2), (5.0, 2.0, 8), (1.0, 1.0, 3), (0.0, 1.0, 4)]:
            e = m.exposed_all_to_all(a, x, c)
            self.assertLessEqual(e, a)
            self.assertGreaterEqual(e + 1e-15, max(a / c, a - x))

    def test_expert_gemm_efficiency(self):
        hw = m.H100
        self.assertAlmostEqual(m.expert_gemm_efficiency(m.EXPERT_M_HALF, hw), hw.gemm_eff / 2)
        self.assertLess(m.expert_gemm_efficiency(64, hw), m.expert_gemm_efficiency(4096, hw))

    def test_fit_alpha_beta_recovers_a_line(self):
        pts = [(b, 3e-5 + b / 2e9) for b in (1e3, 1e5, 1e7, 3e7)]
        alpha, beta = m.fit_alpha_beta(pts)
        self.assertAlmostEqual(alpha, 3e-5, places=12)
        self.assertAlmostEqual(1 / beta, 2e9, delta=1)


class ProjectionTest(unittest.TestCase):
    def test_invariants(self):
        for gpus in (8, 64, 512):
            base = m.project(m.MIXTRAL, m.Layout(gpus=gpus, ep=8, chunks=1, overlap_grad=False))
            chunked = m.project(m.MIXTRAL, m.Layout(gpus=gpus, ep=8, chunks=4, overlap_grad=False))
            both = m.project(m.MIXTRAL, m.Layout(gpus=gpus, ep=8, chunks=4, overlap_grad=True))
            self.assertLessEqual(chunked["step_s"], base["step_s"])
            self.assertLessEqual(both["step_s"], chunked["step_s"])
            self.assertEqual(base["a2a_exposed_s"], base["a2a_raw_s"])
            # Step = parts; MFU = FLOPs / (time x peak).
            r = both
            self.assertAlmostEqual(r["step_s"], r["compute_s"] + r["a2a_exposed_s"] +
                                   r["allreduce_exposed_s"] + r["optimizer_s"], places=9)
            tokens = r["accum"] * 4096
            self.assertAlmostEqual(r["mfu"], m.MIXTRAL.flops_per_token() * tokens /
                                   (r["step_s"] * m.H100_PEAK_BF16), places=12)
            self.assertEqual(r["accum"] * gpus * 4096, 4 * 2**20)

    def test_one_node_needs_no_gradient_network_and_does_not_fit(self):
        r = m.project(m.MIXTRAL, m.Layout(gpus=8, ep=8))
        self.assertEqual(r["allreduce_s"] > 0, True)   # replicated params over 8 GPUs
        self.assertFalse(r["fits_without_activations"])  # 7.2B local params x 16 B
        self.assertTrue(m.project(m.MIXTRAL, m.Layout(gpus=64, ep=8))["fits_without_activations"])

    def test_anchor_fit(self):
        glue = m.glue_for_anchor()
        r = m.project(m.MIXTRAL, m.Layout(gpus=64, ep=8, chunks=1), glue=glue)
        self.assertAlmostEqual(r["tflops_per_gpu"], m.MEGATRON_MIXTRAL_TFLOPS, delta=0.5)
        self.assertGreater(glue, m.GLUE_OVERHEAD)

    def test_calibrate_cpu(self):
        data = {"alltoallv": {"ranks": 2, "size_bytes_time_us": [[2**20, 100 + 2**19 / 1e3],
                                                                    [2**24, 100 + 2**23 / 1e3]]},
                "exchange": {"rows_sent_per_rank": 1000, "d_model": 256, "dispatch_combine_ms": 4.0}}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(data, f)
        try:
            out = m.calibrate_cpu(f.name)
        finally:
            os.unlink(f.name)
        self.assertAlmostEqual(out["alpha_us"], 100, places=6)
        self.assertAlmostEqual(out["busbw_gbs"], 1.0, places=6)  # 1 byte per ns
        predicted_ms = 2 * (100e-6 + 1000 * 256 * 4 / 2 / 1e9) * 1e3
        self.assertAlmostEqual(out["exchange_predicted_ms"], predicted_ms, places=9)


if __name__ == "__main__":
    unittest.main()
