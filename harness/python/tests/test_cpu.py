"""CPU-side tests of the moba package (ctest python_cpu, label cpu): import, the registry as
Python sees it, argument validation with clear messages, the user-callable plumbing (on CPU
tensors), the bridge's forward/backward logic, and `python -m moba` without a GPU. Exit 77
(skipped) only when torch itself is missing; what needs a newer torch skips with the reason."""

import json
import os
import sys
import tempfile
import unittest

try:
    import torch
except ImportError as e:  # the package is a PyTorch package
    print(f"SKIP: torch is not importable ({e})")
    sys.exit(77)

import moba
from moba import bridge, layout, torch_decode, user_callable
from moba.__main__ import decode_study_args, main as moba_main, parse as parse_moba_argv
from moba.command import flags_from_kwargs

EXAMPLES = os.environ.get("MOBA_EXAMPLES", os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, EXAMPLES)
import plain_moba  # noqa: E402

BUILT_IN = ["naive", "naive_dense", "dense_cublas", "tiled_mma", "tiled_mma_dense", "wgmma_dense",
            "wgmma_dense_atomic", "wgmma_moba", "wgmma_moba_atomic", "split_decode", "split_decode_dense"]


def tensors(total=24, hq=4, hkv=2, d=8, dtype=torch.float16, seqlens=(16, 8)):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(total, hq, d, generator=g).to(dtype)
    k = torch.randn(total, hkv, d, generator=g).to(dtype)
    v = torch.randn(total, hkv, d, generator=g).to(dtype)
    cu = torch.tensor([0] + list(torch.tensor(seqlens).cumsum(0).tolist()), dtype=torch.int32)
    return q, k, v, cu


class Registry(unittest.TestCase):
    def test_built_in_entries_in_order(self):
        names = [e["name"] for e in moba.implementations() if not e["external"]]
        self.assertEqual(names, BUILT_IN)

    def test_entry_fields(self):
        wgmma = next(e for e in moba.implementations() if e["name"] == "wgmma_moba")
        self.assertEqual(wgmma["dtypes"], ["bf16", "fp16"])
        self.assertEqual(wgmma["head_dims"], "64, 128")
        self.assertTrue(wgmma["has_gating"] and wgmma["has_backward"] and wgmma["writes_lse"])
        self.assertFalse(wgmma["dense"] or wgmma["external"])

    def test_supports_names_the_refused_value(self):
        p = moba.native.Problem([128], 4, 2, 96, 32, 2, "bf16")
        ok, why = moba.native.supports("wgmma_moba", p)
        self.assertFalse(ok)
        self.assertIn("96", why)
        with self.assertRaisesRegex(ValueError, "unknown implementation 'nope'"):
            moba.native.supports("nope", p)

    def test_problem_refuses_bad_shapes_naming_the_value(self):
        with self.assertRaisesRegex(ValueError, "3"):
            moba.native.Problem([64], 3, 2, 64, 16, 2, "bf16")
        with self.assertRaisesRegex(ValueError, "fp8"):
            moba.native.Problem([64], 4, 2, 64, 16, 2, "fp8")
        p = moba.native.Problem([1000, 17], 4, 1, 64, 128, 3, "fp16")
        self.assertEqual((p.total_tokens, p.sel_slots, p.max_blocks), (1017, 3, 8))


class External(unittest.TestCase):
    def test_register_lists_and_replaces(self):
        def my_moba(q, k, v, cu_seqlens, block, topk, *, scale=None):
            return q
        name = bridge.register(my_moba, "cpu_test_entry", gating=False, lse=False)
        count = len(moba.implementations())
        entry = next(e for e in moba.implementations() if e["name"] == name)
        self.assertTrue(entry["external"])
        self.assertFalse(entry["has_gating"] or entry["writes_lse"])
        bridge.register(my_moba, "cpu_test_entry", gating=True, block_means="rounded")
        self.assertEqual(len(moba.implementations()), count)  # replaced in place
        entry = next(e for e in moba.implementations() if e["name"] == name)
        self.assertTrue(entry["has_gating"])
        self.assertEqual(entry["block_means"], "rounded")

    def test_kernel_through_the_op_implements_what_the_kernel_does(self):
        name = moba.register("op_wgmma_moba")
        entry = next(e for e in moba.implementations() if e["name"] == name)
        self.assertEqual((entry["dtypes"], entry["head_dims"]), (["bf16", "fp16"], "64, 128"))
        ok, why = moba.native.supports(name, moba.native.Problem([128], 4, 2, 96, 32, 2, "bf16"))
        self.assertFalse(ok)
        self.assertIn("96", why)
        with self.assertRaisesRegex(ValueError, "like='nope' names no built-in"):
            bridge.register(lambda q, k, v, cu, b, t: q, "cpu_like", like="nope")

    def test_built_in_name_refused(self):
        with self.assertRaisesRegex(ValueError, "built-in"):
            bridge.register(lambda q, k, v, cu, b, t: q, "naive")

    def test_bad_convention_refused(self):
        with self.assertRaisesRegex(ValueError, "sometimes"):
            bridge.register(lambda q, k, v, cu, b, t: q, "cpu_conv", block_means="sometimes")

    def test_too_few_parameters_refused(self):
        with self.assertRaisesRegex(TypeError, "fn\\(q, k, v, cu_seqlens, block, topk"):
            user_callable.CallableSpec(lambda q, k, v: q)


class Validation(unittest.TestCase):
    def check(self, pattern, **changes):
        q, k, v, cu = tensors()
        args = dict(q=q, k=k, v=v, cu_seqlens=cu, block=8, topk=2)
        args.update(changes)
        with self.assertRaisesRegex((ValueError, TypeError), pattern):
            layout.check_tensors(args["q"], args["k"], args["v"], args["cu_seqlens"], args["block"], args["topk"],
                                 need_cuda=False)

    def test_messages_name_the_bad_value(self):
        q, k, v, cu = tensors()
        self.check(r"q must be \[total, heads, head_dim\], got shape \(24, 32\)", q=q.view(24, 32))
        self.check(r"query heads 4 must be a multiple of kv heads 3", k=torch.zeros(24, 3, 8, dtype=q.dtype),
                   v=torch.zeros(24, 3, 8, dtype=q.dtype))
        self.check(r"dtypes differ", v=v.float())
        self.check(r"dtype torch.float64 is not supported", q=q.double(), k=k.double(), v=v.double())
        self.check(r"cu_seqlens must be int32", cu_seqlens=cu.long())
        self.check(r"block must be a positive int, got 0", block=0)
        self.check(r"topk must be a positive int, got 2.5", topk=2.5)
        self.check(r"k must be contiguous", k=k.transpose(0, 1).contiguous().transpose(0, 1))

    def test_cpu_tensors_refused_for_kernels(self):
        q, k, v, cu = tensors()
        with self.assertRaisesRegex(ValueError, "need CUDA tensors, got device cpu"):
            layout.check_tensors(q, k, v, cu, 8, 2)

    def test_cu_seqlens_must_cover_the_tokens(self):
        q, k, v, _ = tensors()
        with self.assertRaisesRegex(ValueError, "end at total tokens 24"):
            layout.make_problem(q, k, torch.tensor([0, 10, 20], dtype=torch.int32), 8, 2)
        p = layout.make_problem(q, k, torch.tensor([0, 16, 24], dtype=torch.int32), 8, 2)
        self.assertEqual(list(p.seqlens), [16, 8])
        p = layout.make_problem(q, k, torch.tensor([0, 16, 24], dtype=torch.int32), 8, 2, seqlens=[16, 8])
        self.assertEqual(list(p.seqlens), [16, 8])
        with self.assertRaisesRegex(ValueError, r"seqlens \[20, 8\] must be 2 lengths >= 0 summing to total tokens 24"):
            layout.make_problem(q, k, torch.tensor([0, 16, 24], dtype=torch.int32), 8, 2, seqlens=[20, 8])

    def test_attention_says_what_it_needs(self):
        q, k, v, cu = tensors()
        if not moba.OP_AVAILABLE:
            with self.assertRaisesRegex(RuntimeError, "needs torch >= 2.4"):
                moba.attention(q, k, v, cu, 8, 2)
        else:
            with self.assertRaisesRegex(ValueError, "need CUDA tensors"):
                moba.attention(q, k, v, cu, 8, 2)


class Callable(unittest.TestCase):
    def test_signature_detection(self):
        spec = user_callable.CallableSpec(plain_moba.plain_moba)
        self.assertTrue(spec.accepts_selection and spec.accepts_scale and spec.accepts_seqlens)
        spec = user_callable.CallableSpec(lambda q, k, v, cu_seqlens, block, topk: q)
        self.assertFalse(spec.accepts_selection or spec.accepts_scale)

    def test_normalize_accepts_the_documented_returns(self):
        q, _, _, _ = tensors()
        lse = torch.zeros(4, 24)
        self.assertIsNone(user_callable.normalize(q.clone(), q, 2, 2).lse)
        r = user_callable.normalize((q.clone(), lse), q, 2, 2)
        self.assertIs(r.lse, lse)
        sel = torch.full((24, 4, 5), -1, dtype=torch.int64)
        sel[:, :, 0] = 0
        r = user_callable.normalize((q.clone(), None, sel), q, 2, 2)
        self.assertEqual(tuple(r.selection.shape), (24, 4, 2))
        self.assertEqual(r.selection.dtype, torch.int32)

    def test_normalize_names_what_is_wrong(self):
        q, _, _, _ = tensors()
        cases = [(q[:, :2], r"out has shape \(24, 2, 8\), expected \(24, 4, 8\)"),
                 (q.float(), "out has dtype torch.float32, expected q's torch.float16"),
                 ("text", "returned str"),
                 ((q, torch.zeros(24, 4)), r"lse has shape \(24, 4\), expected \(4, 24\)"),
                 ((q, None, torch.zeros(24, 4, 3, dtype=torch.int32)), "those beyond .* = 2 must be -1"),
                 ((q, None, torch.zeros(24, 4, 1, dtype=torch.int32)), r"selection has shape \(24, 4, 1\)")]
        for result, pattern in cases:
            with self.assertRaisesRegex(user_callable.CallableError, pattern):
                user_callable.normalize(result, q, 2, 2, "mine")


class BridgeLogic(unittest.TestCase):
    """The dispatcher's forward/backward on CPU tensors standing in for the harness's buffers."""

    def setUp(self):
        self.q, self.k, self.v, self.cu = tensors(dtype=torch.float32)
        self.problem = moba.native.Problem([16, 8], 4, 2, 8, 8, 2, "fp32")
        self.t = {"q": self.q, "k": self.k, "v": self.v, "cu_seqlens": self.cu,
                  "sel": plain_moba.plain_moba(self.q, self.k, self.v, self.cu, 8, 2)[2].contiguous(),
                  "out": torch.full_like(self.q, float("nan")), "lse": torch.full((4, 24), float("nan")),
                  "dout": torch.randn(24, 4, 8, generator=torch.Generator().manual_seed(5)),
                  "dq": torch.empty_like(self.q), "dk": torch.empty_like(self.k), "dv": torch.empty_like(self.v)}

    def entry(self, fn, **options):
        name = bridge.register(fn, "cpu_bridge_" + fn.__name__, dtypes=("fp32",), **options)
        return bridge._entries[name]

    def test_forward_and_backward_through_autograd(self):
        entry = self.entry(plain_moba.plain_moba)
        bridge._forward(entry, self.problem, self.t, "key")
        bridge._backward(entry, self.problem, self.t, "key")
        leaves = [x.clone().requires_grad_() for x in (self.q, self.k, self.v)]
        out, lse, _ = plain_moba.plain_moba(*leaves, self.cu, 8, 2, selection=self.t["sel"])
        grads = torch.autograd.grad(out, leaves, self.t["dout"])
        self.assertTrue(torch.equal(self.t["out"], out.detach()))
        self.assertTrue(torch.equal(self.t["lse"], lse.detach()))
        for got, want in zip((self.t["dq"], self.t["dk"], self.t["dv"]), grads):
            self.assertTrue(torch.allclose(got, want, rtol=0, atol=1e-6))

    def test_backward_alone_recomputes_the_forward(self):
        entry = self.entry(plain_moba.plain_moba)
        bridge._backward(entry, self.problem, self.t, "other key")
        self.assertFalse(torch.isnan(self.t["dq"]).any())

    def test_gating_writes_the_callables_selection(self):
        entry = self.entry(plain_moba.plain_moba)
        want = self.t["sel"].clone()
        self.t["sel"].fill_(7)
        self.t["v"] = None  # the harness's gating call passes no v
        bridge._gating(entry, self.problem, self.t)
        self.assertTrue(torch.equal(self.t["sel"], want))

    def test_release_drops_the_kept_graph(self):
        # `moba bench` calls it before and after an entry's run so its measured memory is its own.
        entry = self.entry(plain_moba.plain_moba)
        bridge._forward(entry, self.problem, self.t, "key")
        self.assertIsNotNone(entry.graph)
        bridge._dispatch(entry.spec.name, "release", None, {}, 0)
        self.assertIsNone(entry.graph)

    def test_errors_say_what_to_do(self):
        def no_lse(q, k, v, cu_seqlens, block, topk):
            return torch.zeros_like(q)
        with self.assertRaisesRegex(user_callable.CallableError, "returned no lse; register it with lse=False"):
            bridge._forward(self.entry(no_lse, backward=False), self.problem, self.t, "k")
        with self.assertRaisesRegex(user_callable.CallableError, "returned no selection"):
            bridge._gating(self.entry(no_lse), self.problem, self.t)
        with self.assertRaisesRegex(user_callable.CallableError, "out does not require grad"):
            bridge._backward(self.entry(no_lse, lse=False), self.problem, self.t, "k")

        def raises(q, k, v, cu_seqlens, block, topk):
            raise ZeroDivisionError("my kernel broke")
        with self.assertRaisesRegex(ZeroDivisionError, "my kernel broke"):
            bridge._forward(self.entry(raises), self.problem, self.t, "k")


class DeviceViews(unittest.TestCase):
    """The DLPack views the bridge wraps the harness's buffers in, tried on host memory."""

    def test_views_share_memory_in_every_dtype(self):
        from moba.device_views import view
        for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.int32):
            base = torch.arange(24).to(dtype)
            t = view(base.data_ptr(), (2, 3, 4), dtype, cuda=False)
            self.assertEqual((t.shape, t.dtype, t.data_ptr()), ((2, 3, 4), dtype, base.data_ptr()))
            self.assertTrue(torch.equal(t.flatten(), base))
            t[1, 2, 3] = 7
            self.assertEqual(base[23].item(), 7)
        self.assertIsNone(view(0, (2,), torch.float32, cuda=False))

    def test_an_unconsumed_capsule_is_freed(self):
        capsule = moba.native.dlpack_view(1234, [2, 2], "fp32", False)
        del capsule  # the capsule's destructor frees its shape (nothing to assert but no crash)
        with self.assertRaisesRegex(ValueError, "unknown dtype 'fp8'"):
            moba.native.dlpack_view(1234, [2], "fp8", False)


class Examples(unittest.TestCase):
    def test_plain_moba_at_zero_sparsity_is_causal_attention(self):
        q, k, v, cu = tensors(dtype=torch.float32)
        out, lse, sel = plain_moba.plain_moba(q, k, v, cu, 8, 100)
        for a, b in ((0, 16), (16, 24)):
            kk, vv = (x[a:b].repeat_interleave(2, dim=1).transpose(0, 1) for x in (k, v))
            s = q[a:b].transpose(0, 1) @ kk.transpose(1, 2) * 8 ** -0.5
            s = s.masked_fill(torch.ones(b - a, b - a, dtype=torch.bool).triu(1), float("-inf"))
            want = (s.softmax(-1) @ vv).transpose(0, 1)
            self.assertTrue(torch.allclose(out[a:b], want, atol=1e-5))
            self.assertTrue(torch.allclose(lse[:, a:b], torch.logsumexp(s, -1), atol=1e-5))

    def test_plain_moba_gating_follows_the_rules(self):
        # Brute force on one sequence: own block forced, future excluded, top past blocks by the
        # fp32 block-mean score, ties to the lower index.
        q, k, v, cu = tensors(total=40, hq=2, hkv=1, d=4, dtype=torch.float32, seqlens=(40,))
        k[8:16] = k[0:8]  # blocks 0 and 1 tie exactly
        sel = plain_moba.plain_moba(q, k, v, cu, 8, 3)[2]
        kbar = k[:40].view(5, 8, 1, 4).mean(1)[:, 0]
        for i in range(40):
            for h in range(2):
                own = i // 8
                scores = [(-float(q[i, h] @ kbar[j]), j) for j in range(own)]
                want = sorted([own] + [j for _, j in sorted(scores)[:2]])
                got = [b for b in sel[i, h].tolist() if b >= 0]
                self.assertEqual(got, want, f"token {i} head {h}")

    def test_flex_example_needs_new_torch(self):
        try:
            from torch.nn.attention import flex_attention  # noqa: F401
        except ImportError:
            self.skipTest(f"FlexAttention needs torch >= 2.5 (this is {torch.__version__})")
        import flex_moba  # noqa: F401  (imports on a torch that has it)


def plain_attend(qb, kb, vb, scale):
    """Unmasked attention in float64 (the reference attend for torch_decode's plumbing)."""
    p = torch.softmax((qb.double() @ kb.double().transpose(-1, -2)) * scale, dim=-1)
    return (p @ vb.double()).to(qb.dtype)


class TorchDecode(unittest.TestCase):
    """torch_decode's grouping and page gather, with a plain attend standing in for SDPA (what
    SDPA itself computes is judged on the GPU by `check --suite decode`)."""

    @staticmethod
    def per_head(q, k, v, k_lens, scale, group):
        outs, start = [], 0
        for r, n in enumerate(k_lens):
            heads = []
            for h in range(q.shape[1]):
                kh, vh = k[start:start + n, h // group].double(), v[start:start + n, h // group].double()
                p = torch.softmax((q[r, h].double() @ kh.T) * scale, dim=-1)
                heads.append(p @ vh)
            outs.append(torch.stack(heads))
            start += n
        return torch.stack(outs)

    def test_grouped_decode_is_each_head_attending_its_kv_head(self):
        g = torch.Generator().manual_seed(5)
        for hq, hkv in ((4, 4), (4, 2), (4, 1)):
            for k_lens in ([7, 7, 7], [1, 9, 4]):  # one batched call, then one per request
                with self.subTest(layout=f"{hq}:{hkv}", k_lens=k_lens):
                    q = torch.randn(len(k_lens), hq, 8, generator=g)
                    k, v = (torch.randn(sum(k_lens), hkv, 8, generator=g) for _ in range(2))
                    out = torch_decode.grouped_decode(q, k, v, k_lens, 0.3, plain_attend)
                    want = self.per_head(q, k, v, k_lens, 0.3, hq // hkv)
                    self.assertEqual(tuple(out.shape), (len(k_lens), hq, 8))
                    self.assertTrue(torch.allclose(out.double(), want, atol=1e-5), (out - want).abs().max())

    def test_paged_caches_are_gathered_by_the_block_table(self):
        g = torch.Generator().manual_seed(6)
        k_lens, page = [5, 3], 2
        packed_k = torch.randn(sum(k_lens), 2, 4, generator=g)
        packed_v = torch.randn(sum(k_lens), 2, 4, generator=g)
        # Request 0 on pages 3, 0, 5; request 1 on pages 1, 4 (pool of 6 pages, 2 never used).
        table = torch.tensor([[3, 0, 5], [1, 4, -1]], dtype=torch.int32)
        pool_k, pool_v = torch.full((12, 2, 4), float("nan")), torch.full((12, 2, 4), float("nan"))
        start = 0
        for r, n in enumerate(k_lens):
            for j in range(n):
                row = int(table[r, j // page]) * page + j % page
                pool_k[row], pool_v[row] = packed_k[start + j], packed_v[start + j]
            start += n
        k, v = torch_decode.packed_caches(pool_k, pool_v, k_lens, table, page)
        self.assertTrue(torch.equal(k, packed_k))
        self.assertTrue(torch.equal(v, packed_v))
        same_k, same_v = torch_decode.packed_caches(packed_k, packed_v, k_lens, None, 0)
        self.assertIs(same_k, packed_k)
        self.assertIs(same_v, packed_v)

    def test_sdpa_decode_refuses_chunks_or_says_what_torch_lacks(self):
        try:
            fn = torch_decode.sdpa_decode_callable("sdpa_flash_decode")
        except RuntimeError as e:
            self.assertIn("torch >= 2.3", str(e))
            self.assertEqual(moba_main(["check", "--impl", "sdpa_flash_decode", "--suite", "decode"]), 2)
            return
        q = torch.zeros(2, 4, 8)
        with self.assertRaisesRegex(ValueError, "one new token per request"):
            fn(q, q, q, [5, 5], [2, 1], 0.3)

    def test_registered_decode_entry_is_dense_and_decode_only(self):
        name = bridge.register_decode(lambda *a: None, "decode_probe", technique="probe", max_q_len=1)
        entry = {e["name"]: e for e in moba.implementations()}[name]
        self.assertTrue(entry["has_decode"])
        self.assertFalse(entry["has_forward"])
        self.assertTrue(entry["dense"])
        self.assertFalse(entry["writes_lse"])


class CommandLine(unittest.TestCase):
    def test_flags_from_kwargs(self):
        self.assertEqual(flags_from_kwargs({"seqlens": [64, 17], "kv_heads": 2, "gating_only": True, "x": None}),
                         ["--seqlens", "64,17", "--kv-heads", "2", "--gating-only"])

    def test_check_without_gpu_runs_the_baseline_and_writes_the_report(self):
        if moba.native.device_present():
            self.skipTest("a GPU is present: test_gpu.py covers this")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            status = moba_main(["check", "--impl", os.path.join(EXAMPLES, "plain_moba.py") + ":plain_moba",
                                "--seqlens", "64,17", "--heads", "2", "--kv-heads", "1", "--head-dim", "64",
                                "--block", "16", "--topk", "2", "--out", out])
            self.assertEqual(status, 0)
            with open(out) as f:
                report = json.load(f)
            self.assertEqual(report["format"], "moba-report")
            self.assertTrue(report["records"])
            self.assertEqual({r["impl"] for r in report["records"]}, {"cpu_baseline"})

    def test_commands_name_what_the_user_typed(self):
        # Records' commands rerun an entry: a callable registered by `python -m moba` carries the
        # --impl item (and option flags) that registers it again; the report's meta names the
        # Python command line, not the registered names the C++ side parsed.
        item = os.path.join(EXAMPLES, "plain_moba.py") + ":plain_moba_rounded"
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            argv = ["check", "--impl", item, "--block-means", "rounded", "--no-backward", "--seqlens", "64,17",
                    "--heads", "2", "--kv-heads", "1", "--head-dim", "64", "--block", "16", "--topk", "2", "--out", out]
            self.assertEqual(moba_main(argv), 0)
            with open(out) as f:
                meta = json.load(f)["meta"]
        self.assertEqual(meta["command"], "python3 -m moba " + " ".join(argv))
        self.assertEqual(meta["argv"][:4], ["moba", "check", "--impl", "plain_moba_rounded"])
        entry = {e["name"]: e for e in moba.implementations()}["plain_moba_rounded"]
        self.assertEqual(entry["cli"], f"python3 -m moba --impl {item} --block-means rounded --no-backward")
        self.assertEqual({e["name"]: e for e in moba.implementations()}["naive"]["cli"], "moba --impl naive")
        # A function importable by name is named module:function; one of __main__ is not.
        self.assertEqual(bridge._importable_item(plain_moba.plain_moba), "plain_moba:plain_moba")
        self.assertIsNone(bridge._importable_item(lambda *a: None))

    def test_bad_impl_is_a_usage_error(self):
        self.assertEqual(moba_main(["check", "--impl", "no_such_module_xyz:fn", "--suite", "quick"]), 2)
        self.assertEqual(moba_main(["check", "--impl", "not_registered", "--suite", "quick"]), 2)
        self.assertEqual(moba_main(["check", "--impl", "op_not_a_kernel", "--suite", "quick"]), 2)
        self.assertEqual(moba_main(["check", "--torch", "sdpa_cudnn", "--suite", "quick"]), 2)
        self.assertEqual(moba_main(["check", "--dense", "split_decode_dense", "--suite", "decode"]), 2)
        self.assertEqual(moba_main(["decode-study", "--torch", "sdpa_cudnn", "--impl", "none"]), 2)

    def test_decode_study_adds_the_torch_decodes_to_dense(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "study.json")
            argv = ["decode-study", "--layouts", "4:2", "--cache", "1K", "--block", "128", "--topk", "2",
                    "--head-dim", "64", "--out", out]
            if not moba.native.device_present():
                argv += ["--impl", "none"]  # the IO alone
            self.assertEqual(moba_main(argv), 0)
            with open(out) as f:
                report = json.load(f)
            self.assertEqual(report["meta"]["argv"][:3], ["moba", "decode-study", "--dense"])
            dense = report["meta"]["argv"][3].split(",")
            self.assertEqual(dense[0], "split_decode_dense")
            available = [n for n, why in torch_decode.register_torch_decode().items() if not why]
            self.assertEqual(dense[1:], available)
            self.assertEqual(len(report["records"]), 1)

    def test_bench_q_len_gets_the_decode_baselines_not_the_prefill_ones(self):
        command, options, rest = parse_moba_argv(["bench", "--q-len", "1", "--seqlen", "1K", "--dense",
                                                  "split_decode_dense"])
        args = decode_study_args(command, options, rest)
        available = [n for n, why in torch_decode.register_torch_decode().items() if not why]
        self.assertEqual(args[:3], ["bench", "--dense", ",".join(["split_decode_dense"] + available)])
        self.assertEqual(args[3:], ["--q-len", "1", "--seqlen", "1K"])
        self.assertEqual(moba_main(["bench", "--dense", "split_decode_dense", "--seqlen", "1K"]), 2)

    def test_help_lists_the_python_flags_too(self):
        import contextlib
        import io
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            self.assertEqual(moba_main(["check", "--help"]), 0)
        self.assertIn("--block-means", text.getvalue())

    def test_cli_refusals_come_through(self):
        # A shape flag with --suite is refused by the C++ command line (exit 2).
        self.assertEqual(moba_main(["check", "--suite", "quick", "--heads", "8"]), 2)

    def test_either_import_order_works(self):
        # A fresh interpreter per order: _moba loaded before torch, and after it. Each then runs
        # torch code that formats through C++ streams and the in-process command line (a
        # refusal, exit 2). Symbols the module took in from static archives once leaked out and
        # crashed one order or the other (harness/python/CMakeLists.txt, --exclude-libs).
        import subprocess
        body = ("import torch; print(torch.zeros(2)); "
                "from moba.command import run_moba; "
                "raise SystemExit(run_moba(['check', '--suite', 'quick', '--heads', '8']))")
        for first in ("import moba; ", "import torch; import moba; "):
            with self.subTest(order=first):
                done = subprocess.run([sys.executable, "-c", first + body], capture_output=True, text=True,
                                      timeout=120, env=os.environ.copy())
                self.assertEqual(done.returncode, 2, done.stderr[-2000:])
                self.assertIn("--heads does not apply with --suite", done.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
