"""The ONNX export cache (portable.onnx.cached_export): one export per weights and settings."""
import torch

from diaropt.portable import onnx


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x).relu()


def test_an_unchanged_model_is_exported_once_and_a_changed_one_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_MODELS", str(tmp_path))
    calls = []
    real = onnx.export_onnx
    monkeypatch.setattr(onnx, "export_onnx", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(2, 4)
    first = onnx.cached_export(model, (x,), ["x"], "y", "tiny")
    again = onnx.cached_export(Tiny().load_state_dict(model.state_dict()) and model, (x,), ["x"], "y", "tiny")
    assert first == again and len(calls) == 1 and first.parent == tmp_path / "onnx"
    assert not list(first.parent.glob("*.tmp.onnx"))  # written under a temporary name, then renamed
    with torch.no_grad():
        model.lin.weight[0, 0] += 1.0  # other weights: another file, exported anew
    changed = onnx.cached_export(model, (x,), ["x"], "y", "tiny")
    assert changed != first and len(calls) == 2
    out = onnx.OrtModule(changed, ["x"])(x)
    torch.testing.assert_close(out, model(x).detach(), atol=1e-5, rtol=1e-5)  # the file is the changed model
    assert onnx.cached_export(model, (torch.randn(3, 4),), ["x"], "y", "tiny") != changed  # other input shape
