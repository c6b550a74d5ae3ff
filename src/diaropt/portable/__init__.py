"""Portable forms of the real models: plain traceable modules, the convolutional fbank, ONNX
export with an ONNX Runtime wrapper, and CoreML conversion and compression."""
