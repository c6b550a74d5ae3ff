"""Quantization chapter (technique 1): the tables and verdicts built from measurements, and the
chapter's behaviour when the embedding model is not CAM++ (fabricated measurements, no models)."""
import math

import pandas as pd

from diaropt.core.models import EmbeddingChoice
from diaropt.techniques import quantization as q

NAN = float("nan")
CAMPPLUS = EmbeddingChoice("campplus", "cam++-test", "requested")
RESNET = EmbeddingChoice("resnet34", "resnet34-test", "requested")


def sizes(with_embedding=True):
    rows = [{"model": q.SEG, "variant": "fp32", "size (MB)": 6.0, "vs fp32": 1.0},
            {"model": q.SEG, "variant": "fp16", "size (MB)": 3.0, "vs fp32": 0.5},
            {"model": q.SEG, "variant": q.PAL8_TENSOR, "size (MB)": 1.6, "vs fp32": 0.27},
            {"model": q.SEG, "variant": q.PAL4_GROUPED, "size (MB)": 0.9, "vs fp32": 0.15}]
    if with_embedding:
        rows += [{"model": q.EMB, "variant": "fp32", "size (MB)": 28.0, "vs fp32": 1.0},
                 {"model": q.EMB, "variant": "fp16", "size (MB)": 15.4, "vs fp32": 0.56},
                 {"model": q.EMB, "variant": q.PAL8_TENSOR, "size (MB)": 8.4, "vs fp32": 0.3},
                 {"model": q.EMB, "variant": q.PAL4_GROUPED, "size (MB)": 4.2, "vs fp32": 0.15}]
    return pd.DataFrame(rows).set_index(["model", "variant"])


def cpu(with_embedding=True):
    rows = [{"model": q.SEG, "variant": "torch fp32", "speed-up vs torch fp32": 1.0},
            {"model": q.SEG, "variant": "torch dynamic int8", "speed-up vs torch fp32": 1.3},
            {"model": q.SEG, "variant": "torch fp16 arithmetic", "speed-up vs torch fp32": 0.2}]
    if with_embedding:
        rows += [{"model": q.EMB_SHORT, "variant": "torch fp32", "speed-up vs torch fp32": 1.0},
                 {"model": q.EMB_SHORT, "variant": "ONNX Runtime fp32", "speed-up vs torch fp32": 1.9},
                 {"model": q.EMB_SHORT, "variant": "ONNX Runtime dynamic int8", "speed-up vs torch fp32": 2.2},
                 {"model": q.EMB_SHORT, "variant": "torch fp16 arithmetic", "speed-up vs torch fp32": 0.4}]
    return pd.DataFrame(rows).set_index(["model", "variant"])


def ders(with_embedding=True):
    rows = [("none (fp32)", "fp32", 0.0), ("segmentation", q.FP16_EMULATED, 0.1), ("segmentation", q.PAL8_TENSOR, 0.2),
            ("segmentation", q.PAL4_GROUPED, 3.0)]
    if with_embedding:
        rows += [("embedding", q.FP16_EMULATED, 0.6), ("embedding", q.PAL8_TENSOR, -0.1), ("embedding", q.PAL4_GROUPED, 1.0)]
    return pd.DataFrame([{"changed": c, "variant": v, "Δ strict (pts)": d, "CI low": d - 0.25, "CI high": d + 0.25}
                         for c, v, d in rows]).set_index(["changed", "variant"])


def test_worst_ignores_unmeasured_values():
    assert q.worst(0.2, NAN, 0.5) == 0.5
    assert q.worst(NAN, 0.3) == 0.3
    assert math.isnan(q.worst(NAN, NAN))


def test_claims_take_the_worst_model_in_the_full_profile():
    c = q.claims(sizes(), ders(), cpu(), full=True)
    assert (c["fp16_der"], c["int8_der"], c["pal4_der"]) == (0.6, 0.2, 3.0)
    # the fp16 row judges the embedding's emulated-fp16 change, with that row's interval
    assert c["fp16_der_ci"] == (0.6 - 0.25, 0.6 + 0.25) and c["int8_der_ci"] == (0.2 - 0.25, 0.2 + 0.25)
    assert c["fp16_der_verdict"] == "within noise" and c["int8_der_verdict"] == "confirmed"
    assert c["fp16_size_verdict"] == "refuted"  # the embedding's 0.56 is above 0.55
    assert c["int8_size_verdict"] == "confirmed"
    # the guide's speed-ups are CoreML's on Apple hardware; the CPU counterpart is judged beside them
    assert c["int8_speed_verdict"].startswith("not measurable here")
    assert c["int8_speed_verdict"].endswith("CPU counterpart: confirmed")  # ONNX Runtime int8 2.2x >= 2x
    assert c["fp16_speed_verdict"].endswith("CPU counterpart: refuted")


def test_an_unstable_speed_ratio_is_shown_but_not_judged():
    table = cpu()
    table["unstable"] = False
    table.loc[(q.EMB_SHORT, "ONNX Runtime dynamic int8"), "unstable"] = True
    c = q.claims(sizes(), ders(), table, full=True)
    assert c["int8_speed_verdict"].endswith("CPU counterpart: unstable: not judged")  # 2.2x, but its runs disagreed
    assert c["fp16_speed_verdict"].endswith("CPU counterpart: refuted")  # its rows are stable


def test_smoke_profile_measures_fp16_der_on_segmentation_only():
    c = q.claims(sizes(), ders(), cpu(), full=False)
    assert c["fp16_der"] == 0.1
    assert math.isnan(c["int8_der"]) and math.isnan(c["pal4_der"])
    assert c["int8_der_verdict"] == "not measured in the smoke profile"


def test_without_the_embedding_model_verdicts_rest_on_segmentation():
    c = q.claims(sizes(False), ders(False), cpu(False), full=True)
    assert (c["fp16_der"], c["int8_der"], c["pal4_der"]) == (0.1, 0.2, 3.0)
    assert c["fp16_size_verdict"] == "confirmed"  # segmentation alone: 0.5
    assert c["int8_speed_verdict"].endswith("CPU counterpart: partly")  # 1.3x


def test_summary_keeps_its_keys_with_nan_for_an_unmeasured_embedding():
    verdict = q.claims(sizes(False), ders(False), cpu(False), full=True)
    s = q.summary(RESNET, sizes(False), cpu(False), verdict)
    full = q.summary(CAMPPLUS, sizes(), cpu(), q.claims(sizes(), ders(), cpu(), full=True))
    assert set(s) == set(full)
    assert {"size_fp16", "size_int8", "speed_fp16", "speed_int8", "der_fp16_points", "der_int8_points",
            "der_4bit_points", "embedding"} <= set(s)
    assert s["embedding"] == "resnet34-test" and s["embedding_measured"] is False
    assert s["size_fp16"]["segmentation"] == 0.5 and math.isnan(s["size_fp16"]["embedding"])
    assert math.isnan(s["speed_int8"]["embedding"]) and s["speed_int8"]["segmentation"] == 1.3
    assert full["size_int8"] == {"segmentation": 0.27, "embedding": 0.3}
    assert full["speed_int8"] == {"segmentation": 1.3, "embedding": 2.2}


def test_speed_figures_are_nan_when_the_embedding_was_not_timed():
    f = q.speed_figures(cpu(False), NAN)
    assert f["seg_int8_speed"] == (1.3, ".2f")
    assert all(math.isnan(f[k][0]) for k in ("emb_int8_speed", "emb_fp16_speed", "ort_fp32_speed", "ort_int8_cos"))
    assert q.speed_figures(cpu(), 0.99)["ort_fp32_speed"] == (1.9, ".2f")


def test_embedding_note_names_the_model_and_why():
    assert q.embedding_supported(CAMPPLUS) and not q.embedding_supported(RESNET)
    note = q.embedding_note(RESNET)
    assert "resnet34-test" in note and "CAM++" in note and "n/a" in note
    assert "every embedding section" in q.embedding_note(CAMPPLUS)


def test_settings_cover_both_profiles_with_the_same_keys():
    assert set(q.SETTINGS) == {"full", "smoke"}
    assert set(q.SETTINGS["full"]) == set(q.SETTINGS["smoke"])
    assert set(q.SETTINGS["smoke"]["der_seg"]) <= set(q.SETTINGS["full"]["der_seg"])


def test_emulated_half_rounds_every_operation_and_follows_real_fp16():
    import copy

    import torch

    torch.manual_seed(0)
    seen = []

    class Residual(torch.nn.Module):  # functional arithmetic between layers, as in CAM++
        def forward(self, x):
            y = x * torch.sigmoid(x.mean(-1, keepdim=True)) + 1e-3 * x
            seen.append(y)
            return y

    net = torch.nn.Sequential(torch.nn.Conv1d(4, 32, 5), torch.nn.BatchNorm1d(32), Residual(),
                              torch.nn.Conv1d(32, 8, 3)).eval()
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 4, 200)
    with torch.inference_mode():
        ref = net(x)
        emulated_net = q.EmulatedHalf(copy.deepcopy(net))
        emulated = emulated_net(x)
        real = q.HalfPrecision(copy.deepcopy(net))(x)
    on_grid = [emulated, seen[-1], *emulated_net.parameters()]  # the output, a functional intermediate, the weights
    assert all(torch.equal(t, t.half().float()) for t in on_grid)
    assert not torch.equal(seen[0], seen[-1])  # fp32 and emulated intermediates differ: rounding really applied
    # nearer to real fp16 arithmetic than fp32 is
    assert (emulated - real).abs().mean() < (ref - real).abs().mean()
